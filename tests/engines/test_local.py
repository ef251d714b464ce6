"""The local engine's predictions cache: keyed by model identity, resumable, re-laid out."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import failscope
from failscope import InputError
from failscope.data import load_dataset, load_model, model_spec, model_transform, predict
from failscope.engines.local import model_identity, predict_cached, predictions_cache


class Killed(Exception):
    """Stands in for a crash in the middle of the prediction pass."""


class Counting(torch.nn.Module):
    """Wraps the audited model: counts the rows it is run on, fails after ``fail_after`` batches."""

    def __init__(self, inner, fail_after=None):
        super().__init__()
        self.inner = inner
        self.rows = 0
        self.batches = 0
        self.fail_after = fail_after

    def forward(self, x):
        if self.fail_after is not None and self.batches >= self.fail_after:
            raise Killed
        self.batches += 1
        self.rows += len(x)
        return self.inner(x)


@pytest.fixture
def torchscript(channel_classifier_ts):
    spec = model_spec(str(channel_classifier_ts), num_classes=3)
    return spec, load_model(spec)


def test_predictions_resume_after_interruption_and_match(image_dataset, torchscript, tmp_path):
    spec, module = torchscript
    (image_dataset.root / image_dataset.rows[5]["path"]).write_bytes(b"not an image")
    ds = load_dataset(image_dataset.manifest)
    full = predict(ds, module, model_transform(spec), batch_size=16)

    with pytest.raises(InputError, match=r"Counting failed on a batch.*Killed"):
        predict_cached(ds, Counting(module, fail_after=3), spec, cache_dir=tmp_path,
                       batch_size=16, flush_seconds=3600)  # fmt: skip
    count = Counting(module)
    progress = []
    got = predict_cached(ds, count, spec, cache_dir=tmp_path, batch_size=16,
                         progress=lambda d, t: progress.append(d))  # fmt: skip
    assert progress[0] == 48 - 1  # 3 batches of 16, less the unreadable image
    assert count.rows == 144 - 47 - 1
    assert np.array_equal(got.pred, full.pred) and got.n_outputs == full.n_outputs == 3
    assert np.allclose(got.confidence, full.confidence, equal_nan=True)
    assert got.pred[5] == -1 and np.isnan(got.confidence[5])
    assert got.skipped == full.skipped and got.skipped[0]["id"] == 5

    count = Counting(module)  # a re-run predicts nothing but the unreadable image
    again = predict_cached(ds, count, spec, cache_dir=tmp_path, batch_size=16)
    assert count.rows == 0 and again.n_outputs == 3 and np.array_equal(again.pred, full.pred)
    assert [s["id"] for s in again.skipped] == [5]


def test_identity_follows_the_model_file_and_preprocessing(
    image_dataset, channel_classifier_ts, torchscript, tmp_path
):
    spec, module = torchscript
    ident = model_identity(spec, module)
    assert ident == model_identity(dict(spec), load_model(spec))
    resized = model_spec(str(channel_classifier_ts), num_classes=3, image_size=16)
    assert model_identity(resized, module) != ident
    copy = tmp_path / "copy.pt"
    copy.write_bytes(channel_classifier_ts.read_bytes())
    assert model_identity(model_spec(str(copy), num_classes=3), module) == ident  # by content
    with open(copy, "ab") as fh:
        fh.write(b"\0")
    assert model_identity(model_spec(str(copy), num_classes=3), module) != ident
    folder = predictions_cache(tmp_path, ident, spec).folder
    assert folder.name == f"predictions-{ident[:16]}"


def test_module_objects_are_keyed_by_weights_and_source(channel_classifier):
    spec = {"kind": "module", "spec": "ChannelClassifier", "num_classes": 3,
            "image_size": None, "mean": None, "std": None}  # fmt: skip
    ident = model_identity(spec, channel_classifier)
    assert ident is not None
    linear = torch.nn.Linear(2, 2)
    other = torch.nn.Linear(2, 2)
    with torch.no_grad():
        other.weight += 1
    assert model_identity(spec, linear) != model_identity(spec, other)
    typed = type("Typed", (torch.nn.Module,), {"forward": lambda self, x: x})()  # no source
    assert model_identity(spec, typed) is None


def test_discover_rerun_predicts_nothing(image_dataset, channel_classifier, tiny_clip, tmp_path):
    from failscope.embed import load_clip

    calls = []  # counted by a hook: the model's class and its source stay as they are
    channel_classifier.register_forward_hook(lambda mod, args, out: calls.append(len(args[0])))
    clip = load_clip(str(tiny_clip.config), None, checkpoint=tiny_clip.checkpoint, device="cpu")
    kwargs = dict(out=tmp_path / "run", model=channel_classifier, clip=clip, captions=False,
                  report=False)  # fmt: skip
    first = failscope.discover(image_dataset.manifest, **kwargs)
    assert sum(calls) == 144
    calls.clear()
    second = failscope.discover(image_dataset.manifest, **kwargs)
    assert calls == []
    assert second.examples["pred"].tolist() == first.examples["pred"].tolist()
    assert second.examples["confidence"].tolist() == first.examples["confidence"].tolist()
