"""Fixtures for the CLI tests: small run directories built by the real discover."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from runbuilder import add_captions, add_truth, build_run, planted_world

#: (size, error rate in, error rate out) of the top slice of class c, for ``check``'s tests.
SLICE_STATS = ((10, 0.9, 0.1), (12, 0.75, 0.1), (15, 0.6, 0.1), (10, 0.5, 0.1))


@pytest.fixture
def synthetic_run(tmp_path: Path):
    """``synthetic_run(name="run", n_classes=3, class_names=None, captions=True,
    caption_overrides=None, evaluation=False) -> Path``.

    The top slice of class c gets the size and error rates of ``SLICE_STATS[c]`` and status
    "ok" (written with ``Run.save_slices``), so that tables and bars are checked against
    known numbers.
    """

    def make(
        name: str = "run",
        *,
        n_classes: int = 3,
        class_names: list[str] | None = None,
        captions: bool = True,
        caption_overrides: dict[int, list[str]] | None = None,
        evaluation: bool = False,
    ) -> Path:
        w = planted_world(n_classes=n_classes, seed=0)
        names = class_names or [f"class-{c}" for c in range(n_classes)]
        run = build_run(
            tmp_path / name, class_names=names, metadata={"planted_x": w["planted"]},
            images=8, **{k: w[k] for k in ("embeddings", "labels", "predictions", "splits")},
        )  # fmt: skip
        fixed = []
        for s in run.slices:
            size, rate_in, rate_out = SLICE_STATS[s.class_index]
            errors = round(size * rate_in)
            fixed.append(s.replace(size=size, n_errors_in=errors, error_rate_in=errors / size,
                                   error_rate_out=rate_out, status="ok"))  # fmt: skip
        run.save_slices(fixed)
        if captions:
            add_captions(run, caption_overrides)
        if evaluation:
            from failscope.evaluate import evaluate_run

            add_truth(run, [("planted_x", 0, "rare", "color", "red")])
            evaluate_run(run)
        return run.path

    return make


@pytest.fixture
def rng():
    return np.random.default_rng(0)
