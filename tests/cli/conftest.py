"""Fixtures for the CLI tests: small synthetic run directories (see tests/report)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "report"))

from synthetic_run import make_run


@pytest.fixture
def synthetic_run(tmp_path: Path):
    """``synthetic_run(**make_run_kwargs) -> Path``: a fresh synthetic run directory."""

    def make(name: str = "run", **kwargs) -> Path:
        return make_run(tmp_path / name, **kwargs)

    return make
