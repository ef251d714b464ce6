"""Attributions of a run: discover --slicer attribution, failscope attribute RUN, the cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from failscope._validation import InputError
from failscope.report import attribution_mosaic_path

torch = pytest.importorskip("torch")


class ConvChannel(torch.nn.Module):
    """The conftest's ChannelClassifier with a 1x1 conv in front (Grad-CAM can hook it)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 10.0 * torch.relu(self.conv(x)).mean(dim=(2, 3))


@pytest.fixture
def data(tmp_path, dataset_writer):
    root = tmp_path / "data"
    rows = dataset_writer(root, n_per_class=40, splits=("train", "val", "test"), size=16)
    return root, rows


def _discover(root, rows, out, **settings):
    from failscope import discover

    emb = np.random.default_rng(0).normal(size=(len(rows), 8)).astype(np.float32)
    settings = {"captions": False, "report": False, "threads": 1, "batch_size": 16, **settings}
    return discover(root / "manifest.csv", out=out, embeddings=emb, clip=None, **settings)


def test_attribution_slicer_finds_the_planted_failures_with_a_mosaic_each(tmp_path, data):
    from failscope.attribute import load_attributions

    root, rows = data
    run = _discover(root, rows, tmp_path / "run", model=ConvChannel(), slicer="attribution")
    info = run.info.attributions
    assert (info.method, info.layer, info.fallback_reason) == ("gradcam", "conv", None)
    assert [f.kind for f in info.features] == ["model"]  # no CLIP: no clip features
    assert run.info.slicer["params"]["features"] == "model"  # "auto" resolved and recorded
    attr = load_attributions(run)
    assert attr.maps.shape == (len(rows), 16, 16) and attr.maps.dtype == np.float16
    assert attr.features("model").shape == (len(rows), 3)
    with pytest.raises(InputError, match="no 'clip' attribution features"):
        attr.features("clip")
    ex = run.examples
    planted = ex["planted"].to_numpy(bool)
    assert len(run.slices) == 3  # one per class: the planted images fail in every class
    scores = np.asarray(run.slice_score_matrix())
    for s in run.slices:
        member = run.members(s, scores) & (ex["split"] == "val").to_numpy()
        assert planted[member].all() and member.sum() == 12  # exactly the planted ones
        assert s.status == "ok" and s.error_rate_in == 1.0
        for key in ("confidence", "attr_concentration", "attr_outside_centre",
                    "attr_outside_class_region", "attr_concentration_correct"):  # fmt: skip
            assert s.metrics[key] is not None
        rel = attribution_mosaic_path(s.id)
        assert run.owns(rel) and (run.path / rel).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from failscope.report import build_report

    html = build_report(run).read_text(encoding="utf-8")  # every shown slice embeds its mosaic
    for s in run.slices:
        assert f"attribution mosaic of slice {s.id}" in html


def test_attribute_command_uses_the_fallback_for_torchscript(tmp_path, data, channel_classifier_ts,
                                                              capsys):  # fmt: skip
    from failscope.cli import main
    from failscope.run import load_run

    root, rows = data
    run = _discover(root, rows, tmp_path / "run", model=str(channel_classifier_ts))
    assert run.info.attributions is None and run.slices  # directions: no attributions
    assert main(["attribute", str(run.path), "--threads", "1", "--batch-size", "16"]) == 0
    out = capsys.readouterr().out
    assert "attributions: saliency (TorchScript modules cannot be hooked" in out
    run = load_run(run.path)
    info = run.info.attributions
    assert info.method == "saliency" and info.layer is None
    assert "TorchScript" in info.fallback_reason
    assert json.loads((run.path / "run.json").read_text())["attributions"]["method"] == "saliency"
    assert info.grid == (8, 8) and "attribute" in run.info.timings
    for s in run.slices:
        assert run.owns(attribution_mosaic_path(s.id))
        assert s.metrics["attr_outside_centre"] is not None


def test_predictions_only_run_says_attribution_is_unavailable(tmp_path, capsys):
    from runbuilder import build_run, planted_world

    from failscope.cli import main
    from failscope.run import load_run

    w = planted_world()
    arrays = {k: w[k] for k in ("embeddings", "labels", "predictions", "splits")}
    run = build_run(tmp_path / "run", class_names=["a", "b", "c"], **arrays)
    before = (run.path / "run.json").read_bytes()
    assert main(["attribute", str(run.path)]) == 0
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("attribution unavailable: ")
    assert "predictions file" in lines[0]
    assert (run.path / "run.json").read_bytes() == before
    assert load_run(run.path).info.attributions is None
    with pytest.raises(InputError, match="needs the model"):  # and discover refuses up front
        build_run(tmp_path / "run2", class_names=["a", "b", "c"], slicer="attribution", **arrays)


def test_skipped_images_get_aligned_copies_in_the_run(tmp_path, data):
    from failscope.attribute import load_attributions

    root, rows = data
    (root / rows[5]["path"]).unlink()  # one image is gone: examples has one row fewer
    run = _discover(root, rows, tmp_path / "run", model=ConvChannel(), slicer="attribution")
    assert run.info.n_scored == len(rows) - 1
    attr = load_attributions(run)
    assert attr.info.maps == "attributions/maps.npy" and run.owns("attributions/maps.npy")
    assert attr.maps.shape[0] == len(rows) - 1 and np.isfinite(attr.maps).all()
    assert run.examples["id"].iloc[5] == 6  # row 5 is example 6 ...
    full = np.load(next((run.path / "cache").glob("attributions-*/maps.npy")))
    np.testing.assert_array_equal(attr.maps[5], full[6])  # ... and so is its map


def _attribute_script(manifest, model, cache, *, kill_after):
    """Python source that attributes the dataset (batches of 8) and SIGKILLs itself."""
    return textwrap.dedent(f"""
        import os, signal, numpy as np
        from failscope.data import load_dataset, load_model, model_spec
        from failscope.attribute import compute_attributions
        ds = load_dataset({str(manifest)!r})
        spec = model_spec({str(model)!r}, num_classes=3)
        calls = []
        def progress(done, total):
            calls.append(done)
            if len(calls) == {kill_after} + 1:  # the first call reports the cached rows
                os.kill(os.getpid(), signal.SIGKILL)
        pred = np.arange(len(ds)) % 3
        compute_attributions(ds, load_model(spec), spec, pred=pred, cache_dir={str(cache)!r},
                             batch_size=8, flush_seconds=0, progress=progress)
        """)


def test_cache_resumes_after_a_kill(tmp_path, image_dataset, channel_classifier_ts, cli_env):
    from failscope.attribute import compute_attributions
    from failscope.data import load_dataset, load_model, model_spec

    cache = tmp_path / "cache"
    script = _attribute_script(image_dataset.manifest, channel_classifier_ts, cache, kill_after=3)
    proc = subprocess.run([sys.executable, "-c", script], env=cli_env, capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]  # killed by SIGKILL
    ds = load_dataset(image_dataset.manifest)
    spec = model_spec(str(channel_classifier_ts), num_classes=3)
    pred = np.arange(len(ds)) % 3
    seen = []
    again = compute_attributions(ds, load_model(spec), spec, pred=pred, cache_dir=cache,
                                 batch_size=8, progress=lambda d, t: seen.append(d))  # fmt: skip
    assert seen[0] == 24  # three batches of 8 were done and kept; only the rest is computed
    fresh = compute_attributions(ds, load_model(spec), spec, pred=pred,
                                 cache_dir=tmp_path / "fresh", batch_size=8)  # fmt: skip
    np.testing.assert_array_equal(np.asarray(again.maps), np.asarray(fresh.maps))
    assert again.identity == fresh.identity and again.choice.method == "saliency"
    assert os.listdir(cache) == [f"attributions-{again.identity[:16]}"]
