"""Fixtures for the review tests: small runs built by the real discover."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))

from runbuilder import add_captions, build_run, planted_world


@pytest.fixture
def make_run(tmp_path):
    """``make_run(name="run", n_classes=4) -> Run``: a captioned run with one slice per class."""

    def make(name: str = "run", n_classes: int = 4, seed: int = 0):
        w = planted_world(n_classes=n_classes, n_per_class=90, d=16, seed=seed)
        run = build_run(
            tmp_path / name,
            embeddings=w["embeddings"],
            labels=w["labels"],
            predictions=w["predictions"],
            splits=w["splits"],
            class_names=[f"class-{c}" for c in range(n_classes)],
            images=4,
        )
        return add_captions(run)

    return make


@pytest.fixture
def server(make_run):
    """A review server on a free localhost port, stopped after the test."""
    from failscope.review.server import ReviewServer

    srv = ReviewServer(make_run())
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
