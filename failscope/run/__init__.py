"""The run directory: the typed contract between stages (format 2).

Every stage reads and writes one folder, ``RUN/``, through this package only::

    RUN/
      run.json            RunInfo: the discover config, versions, seed, timings, classes,
                          skipped inputs, model/CLIP specs with hashes, the files it owns
      examples.parquet    one row per scored example (EXAMPLE_COLUMNS, then metadata)
      slices.json         SlicesFile: one ClassEntry per class, one SliceEntry per slice
      slice_scores.npy    (n_examples, max slices per class) float32, memory-mapped
      directions.npy      (n_directions, d) float32 directions of direction-based slices
      slicer.npz          the fitted slicer (arrays + JSON, no pickle)
      cache/              embeddings (memory-mapped .npy + key file), text embeddings
      truth.json          world runs only: the planted slices (Truth)
      evaluation.json     ``failscope evaluate`` output (Evaluation)
      annotations.json    a person's verdicts per slice (Annotations)
      report.html, plots/ the self-contained report and its PNGs
      retrain/            metrics.json, predictions.parquet, checkpoints

Layers: :mod:`._io` (atomic writes, JSON, hashes) at the bottom, :mod:`._record`
(typed JSON records), :mod:`.schema` and :mod:`.config` (the records), :mod:`.store`
(reading: :class:`Run`), :mod:`.writer` and :mod:`._journal` (whole-run writes,
locking, ownership of files).
"""

from __future__ import annotations

from failscope.run._io import (
    atomic_open,
    atomic_write,
    file_sha256,
    read_json,
    write_json,
    write_npy,
    write_parquet,
)
from failscope.run._journal import run_lock
from failscope.run.config import ATTRIBUTION_METHODS, DEFAULT_CS, DiscoverConfig
from failscope.run.schema import EXAMPLE_COLUMNS, FORMAT_VERSION
from failscope.run.store import (
    ANNOTATIONS_JSON,
    CACHE_DIR,
    DIRECTIONS,
    EVALUATION_JSON,
    EXAMPLES,
    PLOTS_DIR,
    REPORT_HTML,
    RETRAIN_DIR,
    RUN_JSON,
    SLICE_SCORES,
    SLICER_STATE,
    SLICES_JSON,
    TRUTH_JSON,
    Run,
    load_run,
)

__all__ = [
    "ANNOTATIONS_JSON",
    "ATTRIBUTION_METHODS",
    "CACHE_DIR",
    "DEFAULT_CS",
    "DIRECTIONS",
    "EVALUATION_JSON",
    "EXAMPLES",
    "EXAMPLE_COLUMNS",
    "FORMAT_VERSION",
    "PLOTS_DIR",
    "REPORT_HTML",
    "RETRAIN_DIR",
    "RUN_JSON",
    "SLICER_STATE",
    "SLICES_JSON",
    "SLICE_SCORES",
    "TRUTH_JSON",
    "DiscoverConfig",
    "Run",
    "atomic_open",
    "atomic_write",
    "file_sha256",
    "load_run",
    "read_json",
    "run_lock",
    "write_json",
    "write_npy",
    "write_parquet",
]
