"""The self-contained HTML report of a run directory (``failscope report``)."""

from __future__ import annotations

from failscope.report.build import PLOTS_DIR, build_report, parse_retrain_metrics, severity

__all__ = ["PLOTS_DIR", "build_report", "parse_retrain_metrics", "severity"]
