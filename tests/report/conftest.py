"""Fixtures for the report tests: synthetic run directories and a headless Chromium."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from cdp import Chromium, find_chromium
from synthetic_run import HOSTILE_CAPTIONS, HOSTILE_NAMES, make_run


@pytest.fixture(scope="session")
def run_factory(tmp_path_factory: pytest.TempPathFactory):
    """``run_factory(name, **make_run_kwargs) -> Path``: a fresh synthetic run directory."""

    def make(name: str = "run", **kwargs) -> Path:
        root = tmp_path_factory.mktemp(name)
        return make_run(root / "run", **kwargs)

    return make


@pytest.fixture(scope="session")
def browser_run(run_factory) -> Path:
    """The run whose report the browser test opens.

    A synthetic run with every optional part (captions, checks, retraining, evaluation,
    missing and corrupt images, skipped inputs and a skipped class). To test the demo's
    report instead, return the run directory written by ``failscope demo`` here (or set
    ``FAILSCOPE_REPORT_TEST_RUN=RUN`` to try any finished run, with retraining and
    evaluation): the browser test only relies on ``RUN/report.html`` and ``RUN/slices.json``.
    """
    from failscope.report import build_report

    given = os.environ.get("FAILSCOPE_REPORT_TEST_RUN")
    if given:
        build_report(given)
        return Path(given)

    run = run_factory(
        "browser",
        n_classes=6,
        skipped_classes=(4,),
        retrain=True,
        evaluation=True,
        missing_images=1,
        corrupt_images=1,
        skipped_inputs=15,
    )
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
def hostile_run(run_factory) -> Path:
    """A run whose class names, captions and paths are HTML/JS injection attempts."""
    from failscope.report import build_report

    run = run_factory(
        "hostile",
        n_classes=len(HOSTILE_NAMES),
        class_names=HOSTILE_NAMES,
        caption_overrides=HOSTILE_CAPTIONS,
        retrain=True,
        evaluation=True,
        skipped_inputs=3,
    )
    build_report(run)
    return run


@pytest.fixture(scope="session")
def chromium():
    """A headless Chromium; skipped when absent, except under CI=true where it must exist."""
    exe = find_chromium()
    if exe is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(
                "CI=true but no Chromium was found; install it "
                "(apt-get install -y chromium) or set CHROMIUM=/path/to/chromium"
            )
        pytest.skip("Chromium is not installed (apt-get install -y chromium)")
    browser = Chromium.launch(exe)
    try:
        yield browser
    finally:
        browser.close()
