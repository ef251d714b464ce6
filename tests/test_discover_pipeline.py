"""``failscope.discover`` through the Python API: every model kind, bad inputs, re-runs."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest

import failscope
from failscope import InputError
from failscope.embed import ClipModel, load_clip
from failscope.run import EXAMPLE_COLUMNS


@pytest.fixture
def clip(tiny_clip) -> ClipModel:
    return load_clip(str(tiny_clip.config), None, checkpoint=tiny_clip.checkpoint, device="cpu")


def check_run_consistency(run, *, n_rows: int, n_classes: int = 3) -> pd.DataFrame:
    """Assertions every discover run must satisfy; returns the examples frame."""
    ex = run.examples
    assert tuple(ex.columns[: len(EXAMPLE_COLUMNS)]) == EXAMPLE_COLUMNS
    assert len(ex) == n_rows == run.info.n_scored
    assert ex["id"].is_monotonic_increasing and ex["id"].is_unique
    assert (ex["correct"] == (ex["pred"] == ex["label"])).all()
    dim = run.info.embeddings.dim
    assert run.directions.shape == (len(run.slices), dim)
    assert run.embeddings().shape == (n_rows, dim)
    slicer = run.slicer()
    scores = slicer.score(run.embeddings(), ex["label"].to_numpy())
    np.testing.assert_allclose(scores, run.slice_score_matrix(), atol=1e-5)
    np.testing.assert_allclose(scores[:, 0], ex["failure_score"], atol=1e-5, equal_nan=True)
    fit = ex[ex["split"] == run.fit_split]
    by_class = {c.class_index: c for c in run.classes}
    for c, entry in by_class.items():
        members = fit[fit["label"] == c]
        assert entry.n_fit == len(members)
        assert entry.n_errors_fit == int((~members["correct"]).sum())
        assert entry.n_slices == len(run.slices_of(c))
        if entry.status == "skipped":
            assert entry.n_slices == 0 and not members["slice"].any()
    for s in run.slices:
        members = fit[fit["label"] == s.class_index]
        assert s.size == int(run.members(s)[(ex["split"] == run.fit_split).to_numpy()].sum())
        assert np.isfinite(run.directions[s.rule.direction]).all()
        if s.rule.threshold == "zero" and s.rank == 0:
            assert (members["slice"] == (members["failure_score"] > 0)).all()
    info = run.info
    assert info.format == 2 and list(info.classes) == run.class_names
    assert set(info.timings) - {"captions", "report"} == {
        "load_data",
        "load_models",
        "predict",
        "embed",
        "fit",
        "score",
        "write",
    }
    assert set(info.versions) >= {"failscope", "torch", "open_clip", "sklearn", "numpy"}
    return ex


def test_discover_torchscript_finds_the_planted_slice(
    image_dataset, channel_classifier_ts, clip, tmp_path
):
    image_dataset.root.joinpath(image_dataset.rows[70]["path"]).unlink()  # missing (train)
    image_dataset.root.joinpath(image_dataset.rows[100]["path"]).write_bytes(b"corrupt")  # val
    stages = set()
    run = failscope.discover(
        image_dataset.manifest,
        out=tmp_path / "run",
        model=str(channel_classifier_ts),
        clip=clip,
        progress=lambda stage, done, total: stages.add((stage, total)),
    )
    assert stages == {("predict", 144), ("embed", 144)}
    digest = hashlib.sha256(channel_classifier_ts.read_bytes()).hexdigest()
    assert run.info.model.sha256 == {"spec": digest}  # the model file, by content
    ex = check_run_consistency(run, n_rows=142)
    assert [s.id for s in run.skipped] == [70, 100]
    assert run.skipped[0].reason == "missing file"
    assert run.skipped[1].reason.startswith("unreadable image")
    assert 70 not in set(ex["id"]) and 100 not in set(ex["id"])
    # row j of the embeddings is example ids[j]: a compacted copy in the run
    assert run.info.embeddings.path == "embeddings.npy"
    # metadata passed through, aligned by id
    planted = {i: r["planted"] for i, r in enumerate(image_dataset.rows)}
    assert ex["planted"].tolist() == [planted[i] for i in ex["id"]]
    assert "brightness" in ex.columns
    # the audited model fails exactly on planted images; each slice is exactly its errors
    assert (ex["correct"] == ~ex["planted"]).all()
    for s in run.slices:
        assert s.status == "ok" and s.support.cv_score > 0.9
        assert s.error_rate_in == 1.0 and s.error_rate_out == 0.0
    info = run.info
    assert info.model.kind == "torchscript" and info.reference_split == "train"
    assert info.data["manifest"] == str(image_dataset.manifest.resolve())
    assert info.embeddings.clip.checkpoint == str(clip.checkpoint)
    assert json.loads((tmp_path / "run" / "slices.json").read_text())["format"] == 2
    assert failscope.DiscoverConfig.from_json(info.config, where="x") == run.config


def test_rerun_reuses_the_embedding_cache(
    image_dataset, channel_classifier_ts, clip, tmp_path, monkeypatch
):
    kwargs = dict(out=tmp_path / "run", model=str(channel_classifier_ts), clip=clip)
    first = failscope.discover(image_dataset.manifest, **kwargs)
    first_scores = first.examples["failure_score"].to_numpy()
    # captions and the report come with discover by default
    assert first.slices and all(s.captions.failure for s in first.slices)
    assert (tmp_path / "run" / "report.html").is_file()
    assert {"captions", "report"} <= set(first.info.timings)
    calls = []
    real = ClipModel.encode_images
    monkeypatch.setattr(
        ClipModel, "encode_images", lambda self, x: calls.append(1) or real(self, x)
    )
    second = failscope.discover(
        image_dataset.manifest, threshold="topk:3", captions=False, report=False, **kwargs
    )
    assert calls == []
    assert all(s.captions is None for s in second.slices)
    assert not (tmp_path / "run" / "report.html").exists()  # the old run's, so removed
    assert second.info.embeddings.path.startswith("cache/embeddings-")
    assert np.allclose(second.examples["failure_score"], first_scores)
    check_run_consistency(second, n_rows=144)
    assert [s.size for s in second.slices] == [3, 3, 3]
    (tmp_path / "run" / "evaluation.json").write_text("{}")
    second.add_files("evaluation.json")  # as failscope evaluate does
    third = failscope.discover(image_dataset.manifest, threshold="topk:3", **kwargs)
    assert third.evaluation is None  # stale parts removed
    with pytest.raises(InputError, match="is not a file"):  # a failed re-run keeps the old run
        failscope.discover(image_dataset.manifest, out=tmp_path / "run", model="nope.pt", clip=clip)
    assert failscope.load_run(tmp_path / "run").config.threshold == "topk:3"


def test_discover_callable_and_pickled_torchvision_checkpoint(
    image_dataset, clip, tmp_path, monkeypatch
):
    import torch
    import torchvision

    (tmp_path / "tiny_models_mod.py").write_text(
        "import torch\n"
        "class Channel(torch.nn.Module):\n"
        "    def forward(self, x):\n"
        "        return 10 * x.mean(dim=(2, 3))\n"
        "def make():\n"
        "    return Channel()\n"
    )
    monkeypatch.chdir(tmp_path)
    run = failscope.discover(
        image_dataset.manifest, out=tmp_path / "a", model="tiny_models_mod:make", clip=clip
    )
    ex = check_run_consistency(run, n_rows=144)
    assert (ex["correct"] == ~ex["planted"]).all()
    assert run.info.model.kind == "callable" and run.info.model.cwd == str(tmp_path)

    torch.manual_seed(0)
    torch.save({"model": torchvision.models.resnet18(num_classes=3)}, tmp_path / "pickled.pt")
    kwargs = dict(
        model="torchvision:resnet18", checkpoint=tmp_path / "pickled.pt", image_size=32, clip=clip
    )
    with pytest.raises(InputError, match=r"needs pickle.*--trust-checkpoint"):
        failscope.discover(image_dataset.manifest, out=tmp_path / "b", **kwargs)
    run = failscope.discover(
        image_dataset.manifest, out=tmp_path / "b", trust_checkpoint=True, **kwargs
    )
    check_run_consistency(run, n_rows=144)
    model = run.info.model
    assert model.kind == "torchvision" and model.trust_checkpoint and model.image_size == 32
    assert model.mean == pytest.approx([0.485, 0.456, 0.406])


def test_discover_from_predictions_and_embeddings_files(image_dataset, tmp_path):
    n = len(image_dataset.rows)
    rng = np.random.default_rng(0)
    planted = np.array([r["planted"] for r in image_dataset.rows])
    labels = np.array([["ant", "bee", "cat"].index(r["label"]) for r in image_dataset.rows])
    pred = np.where(planted, (labels + 1) % 3, labels)
    np.save(tmp_path / "pred.npy", pred)
    emb = rng.normal(size=(n, 8)).astype(np.float32)
    emb[:, 0] += 6.0 * planted  # the failure mode lives on axis 0
    emb[5] = np.nan  # an example without an embedding is skipped
    np.save(tmp_path / "emb.npy", emb)
    run = failscope.discover(
        image_dataset.manifest,
        out=tmp_path / "run",
        predictions=tmp_path / "pred.npy",
        embeddings=tmp_path / "emb.npy",
        clip=None,
    )
    ex = check_run_consistency(run, n_rows=n - 1)
    assert [s.to_json() for s in run.skipped] == [
        {"id": 5, "path": image_dataset.rows[5]["path"], "reason": "embedding is NaN or inf"}
    ]
    assert ex["confidence"].isna().all()
    assert run.info.model.kind == "predictions" and run.info.embeddings.clip is None
    pred_digest = hashlib.sha256((tmp_path / "pred.npy").read_bytes()).hexdigest()
    assert run.info.model.sha256 == {"spec": pred_digest}
    for s in run.slices:
        assert s.support.cv_score > 0.9
        assert abs(run.directions[s.rule.direction, 0]) > 0.5  # along the planted axis


def test_discover_input_errors(image_dataset, channel_classifier_ts, tmp_path):
    m = image_dataset.manifest
    with pytest.raises(InputError, match="exactly one of a model"):
        failscope.discover(m, out=tmp_path / "r", clip=None, embeddings="x.npy")
    with pytest.raises(
        InputError, match=r"fit split 'test' is not in the data.*\['train', 'val'\]"
    ):
        failscope.discover(
            m, out=tmp_path / "r", model=str(channel_classifier_ts), fit_split="test"
        )
    np.save(tmp_path / "p.npy", np.zeros(10, dtype=np.int64))
    with pytest.raises(InputError, match="has 10 rows but the dataset has 144 examples"):
        failscope.discover(
            m, out=tmp_path / "r", predictions=tmp_path / "p.npy", clip=None, embeddings="x"
        )
    (tmp_path / "classes.txt").write_text("ant\nbee\ncat\ndog\n")
    with pytest.raises(InputError, match="the model has 3 outputs but the data has 4 classes"):
        failscope.discover(
            m, out=tmp_path / "r", model=str(channel_classifier_ts),
            classes=tmp_path / "classes.txt", embeddings=np.zeros((144, 4), np.float32), clip=None,
        )  # fmt: skip
    with pytest.raises(InputError, match="slice threshold 'half'"):
        failscope.discover(m, out=tmp_path / "r", model="x", threshold="half")
    assert not (tmp_path / "r" / "run.json").exists()


def test_shared_cache_rebuilt_by_another_run_is_refused(
    image_dataset, channel_classifier_ts, clip, tmp_path, dataset_writer
):
    """A run that reads embeddings in place from a shared cache notices a re-layout."""
    shared = tmp_path / "shared-cache"
    kwargs = dict(model=str(channel_classifier_ts), clip=clip, cache_dir=shared)
    run = failscope.discover(image_dataset.manifest, out=tmp_path / "a", **kwargs)
    assert run.info.embeddings.keys_sha256
    assert run.embeddings().shape[0] == 144
    other = tmp_path / "other"
    dataset_writer(other, n_per_class=10, seed=5)
    failscope.discover(other / "manifest.csv", out=tmp_path / "b", **kwargs)
    with pytest.raises(InputError, match=r"shared embedding cache .* has changed"):
        failscope.load_run(tmp_path / "a").embeddings()


def test_embeddings_that_encode_the_models_decision_are_flagged(tmp_path):
    """Embeddings from the audited model's own penultimate layer: the model's predictions are
    a linear function of them, mistakes included. discover says so in run.json."""
    from runbuilder import build_run

    rng = np.random.default_rng(0)
    n, k, d = 900, 3, 12
    labels = np.repeat(np.arange(k), n // k)
    feats = rng.normal(size=(n, d)).astype(np.float32)
    head = rng.normal(size=(d, k))
    preds = (feats @ head).argmax(axis=1)  # the model: a linear head on its own features
    splits = np.array(["train", "val", "test"] * (n // 3))
    own = build_run(tmp_path / "own", embeddings=feats, labels=labels, predictions=preds,
                    splits=splits, class_names=["a", "b", "c"])  # fmt: skip
    assert any("audited model's own features" in w for w in own.info.warnings)
    other = rng.normal(size=(n, d)).astype(np.float32)
    indep = build_run(tmp_path / "indep", embeddings=other, labels=labels, predictions=preds,
                      splits=splits, class_names=["a", "b", "c"])  # fmt: skip
    assert not indep.info.warnings
