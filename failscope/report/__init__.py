"""The self-contained HTML report of a run directory (``failscope report``).

:func:`slice_file_id` and :func:`attribution_mosaic_path` name a slice's files under
``RUN/plots/``: a stage that draws an attribution mosaic for slice ``"8/1"`` writes it
to ``RUN/plots/mosaic-8-1.png`` (and records it with ``Run.add_files``), and the
report embeds it beside the slice's image mosaic.
"""

from __future__ import annotations

from failscope.report._images import attribution_mosaic_path, slice_file_id
from failscope.report.build import PLOTS_DIR, build_report

__all__ = [
    "PLOTS_DIR",
    "attribution_mosaic_path",
    "build_report",
    "slice_file_id",
]
