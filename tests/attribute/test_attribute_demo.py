"""``failscope demo --slicer attribution`` on a tiny world: Grad-CAM on the eager CNN."""

from __future__ import annotations

import numpy as np
import pytest

from failscope.report import attribution_mosaic_path

pytestmark = pytest.mark.slow


def test_demo_with_the_attribution_slicer(tmp_path, capsys):
    from failscope.cli import main
    from failscope.run import load_run
    from failscope.world import GLYPH_BOX_COLUMNS

    out = tmp_path / "run"
    argv = ["demo", "--sizes", "400,300,300", "--out", str(out), "--cache-dir",
            str(tmp_path / "models"), "--plant", "spurious:0:background=pink:0.95",
            "--slicer", "attribution", "--no-retrain", "--no-report", "--threads", "1"]  # fmt: skip
    assert main(argv) == 0
    assert "Planted slices vs discovered" in capsys.readouterr().out
    run = load_run(out)
    # the TorchScript CNN cannot be hooked: the demo loads the same weights eagerly
    assert run.info.model.kind == "callable"
    assert run.info.model.spec == "failscope.world.audited:audited_cnn"
    assert run.info.model.checkpoint.endswith(".state.pt") and run.info.model.sha256
    info = run.info.attributions
    assert info.method == "gradcam" and info.layer == "backbone.6.0" and info.grid == (4, 4)
    assert [f.kind for f in info.features] == ["model", "clip"]
    assert run.info.slicer["name"] == "attribution" and run.slices
    assert set(GLYPH_BOX_COLUMNS) <= set(run.examples.columns)
    for s in run.slices:
        assert s.slicer == "attribution" and s.captions is not None
        assert run.owns(attribution_mosaic_path(s.id))
        assert 0.0 <= s.metrics["attr_background"] <= 1.0
    assert run.evaluation is not None and run.truth is not None
    assert np.isfinite(run.slice_score_matrix()[run.examples["label"] == 0, 0]).all()
