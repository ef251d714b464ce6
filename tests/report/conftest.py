"""Fixtures for the report tests: runs built by the real stages (Chromium: tests/conftest.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from synthetic_run import HOSTILE_CAPTIONS, HOSTILE_NAMES, make_run


@pytest.fixture(scope="session")
def run_factory(tmp_path_factory: pytest.TempPathFactory):
    """``run_factory(name, **make_run_kwargs) -> Run``: a fresh planted multi-mode run."""

    def make(name: str = "run", **kwargs):
        return make_run(tmp_path_factory.mktemp(name) / "run", **kwargs)

    return make


@pytest.fixture(scope="session")
def full_run(run_factory):
    """A run with every optional part: K = 3 slices per class (weak ones among them),
    captions and checks, retraining, evaluation, missing and corrupt images, skipped
    inputs, a skipped class, a class without a slice and a run warning. Not reported."""
    run = run_factory(
        "full",
        n_classes=6,
        skipped_classes=(4,),
        empty_classes=(5,),
        retrain=True,
        evaluation=True,
        missing_images=1,
        corrupt_images=1,
        skipped_inputs=15,
        warnings=("the <b>labels</b> look like a function of the predictions",),
    )
    assert {s.status for s in run.slices} == {"ok", "weak"}
    assert max(c.n_slices for c in run.classes) == 3
    return run


@pytest.fixture(scope="session")
def browser_run(full_run) -> Path:
    """The run whose report the browser test opens (``full_run``, reported).

    Set ``FAILSCOPE_REPORT_TEST_RUN=RUN`` to try any finished run instead (with
    retraining and evaluation): the browser test only relies on its report and slices.
    """
    from failscope.report import build_report
    from failscope.run import load_run

    given = os.environ.get("FAILSCOPE_REPORT_TEST_RUN")
    run = load_run(given) if given else full_run
    build_report(run)
    return run


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real ``failscope demo`` run (every stage, report included) on a smaller world."""
    from failscope.demo import run_demo

    tmp = tmp_path_factory.mktemp("demo")
    sizes = {"train": 4000, "val": 1500, "test": 1500}
    result = run_demo(out=tmp / "run", sizes=sizes, cache_dir=tmp / "models")
    assert result["report"] == tmp / "run" / "report.html"
    return tmp / "run"


@pytest.fixture(scope="session")
def hostile_run(run_factory):
    """A reported run whose class names, captions, plant names and skipped-input paths
    are HTML/JS injection attempts."""
    from failscope.report import build_report

    run = run_factory(
        "hostile",
        n_classes=len(HOSTILE_NAMES),
        class_names=HOSTILE_NAMES,
        caption_overrides=HOSTILE_CAPTIONS,
        retrain=True,
        evaluation=True,
        skipped_inputs=3,
        warnings=("<script>window.__pwned = 5</script>",),
    )
    build_report(run)
    return run
