"""Bad DATA and MODEL inputs of ``failscope discover``: one line, exit 2, nothing touched.

Each case writes a small dataset (3 classes x 12 images, one ``val`` split) with a
predictions file and embeddings that would run, spoils one input, and asserts the
exit code, a single ``failscope discover: error:`` line naming the file, column or
value at fault, no traceback, and that no file outside the run directory changed.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bad_inputs.harness import assert_one_line_error, assert_untouched, run_cli, snapshot

N_PER_CLASS = 12
N = 3 * N_PER_CLASS


@dataclass
class Case:
    """A dataset that runs, plus the paths a case spoils."""

    root: Path  # tmp_path: everything outside ``out`` must stay untouched
    data: Path
    manifest: Path
    preds: Path
    emb: Path
    out: Path

    def discover(self, *args: object, data: Path | None = None):
        """``failscope -q discover`` on this case, with reports and captions off."""
        argv = ["-q", "discover", "--data", data or self.manifest, "--out", self.out]
        return run_cli(*argv, "--no-report", "--no-captions", *args)

    def check(self, res, *parts: object) -> str:
        """The one-line error assertions, plus: nothing outside ``out`` touched."""
        line = assert_one_line_error(res, "discover", *map(str, parts))
        assert_untouched(self.before, self.root, exclude=(self.out,))
        return line

    def freeze(self) -> None:
        """Snapshot every file outside ``out`` (call after writing the bad input)."""
        self.before = snapshot(self.root, exclude=(self.out,))


@pytest.fixture
def case(tmp_path, dataset_writer, monkeypatch) -> Case:
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # imported models: no __pycache__
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = tmp_path / "data"
    rows = dataset_writer(data, n_per_class=N_PER_CLASS, splits=("val",))
    labels = np.array([["ant", "bee", "cat"].index(r["label"]) for r in rows])
    planted = np.array([r["planted"] for r in rows])
    pd.DataFrame({"pred": np.where(planted, (labels + 1) % 3, labels)}).to_csv(
        tmp_path / "preds.csv", index=False
    )
    np.save(tmp_path / "emb.npy", np.random.default_rng(0).normal(size=(N, 8)).astype("f4"))
    c = Case(tmp_path, data, data / "manifest.csv", tmp_path / "preds.csv", tmp_path / "emb.npy",
             tmp_path / "run")  # fmt: skip
    c.freeze()
    return c


def _write_module(folder: Path, name: str, body: str) -> str:
    (folder / f"{name}.py").write_text("import torch\n\n" + body)
    return f"{name}:make"


def test_the_unspoiled_case_runs(case):
    res = case.discover("--predictions", case.preds, "--embeddings", case.emb)
    assert res.rc == 0, res.err
    assert (case.out / "run.json").is_file()


# --------------------------------------------------------------------------- predictions files


def test_zero_byte_predictions_npy(case):
    bad = case.root / "p.npy"
    bad.write_bytes(b"")
    case.freeze()
    res = case.discover("--predictions", bad, "--embeddings", case.emb)
    case.check(res, bad, "is empty (0 bytes)")


def test_truncated_predictions_npy(case):
    bad = case.root / "p.npy"
    np.save(bad, np.full((N, 3), 1 / 3, np.float32))
    bad.write_bytes(bad.read_bytes()[:200])
    case.freeze()
    res = case.discover("--predictions", bad, "--embeddings", case.emb)
    case.check(res, bad, "cannot be read as a .npy array", "truncated")


def test_zero_dimensional_predictions_npy(case):
    bad = case.root / "p.npy"
    np.save(bad, np.float32(1.0))
    case.freeze()
    res = case.discover("--predictions", bad, "--embeddings", case.emb)
    case.check(res, bad, "0-d array")


def test_non_numeric_probability(case):
    probs = pd.DataFrame({f"prob_{c}": np.full(N, 1 / 3) for c in ("ant", "bee", "cat")})
    probs = probs.astype(object)
    probs.loc[5, "prob_bee"] = "high"
    bad = case.root / "p.csv"
    probs.to_csv(bad, index=False)
    case.freeze()
    res = case.discover("--predictions", bad, "--embeddings", case.emb)
    case.check(res, bad, "'prob_bee'", "'high'", "row 5")


def test_probability_columns_that_do_not_match_the_classes(case):
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=N)
    bad = case.root / "p.csv"
    pd.DataFrame(probs, columns=["prob_ant", "prob_bee", "prob_dog"]).to_csv(bad, index=False)
    case.freeze()
    res = case.discover("--predictions", bad, "--embeddings", case.emb)
    case.check(res, bad, "no class for [prob_dog]", "no column for [cat]")


def test_probability_columns_missing_a_class(case):
    bad = case.root / "p.csv"
    pd.DataFrame({"prob_ant": np.full(N, 0.5), "prob_bee": 0.5}).to_csv(bad, index=False)
    case.freeze()
    res = case.discover("--predictions", bad, "--embeddings", case.emb)
    case.check(res, bad, "no column for [cat]")


def test_numbered_probability_columns_that_are_not_positional(case):
    bad = case.root / "p.csv"
    pd.DataFrame({f"prob_{k}": np.full(N, 1 / 3) for k in (1, 2, 3)}).to_csv(bad, index=False)
    case.freeze()
    res = case.discover("--predictions", bad, "--embeddings", case.emb)
    case.check(res, bad, "prob_1", "prob_0 .. prob_2")


def test_scores_that_are_neither_probabilities_nor_logits(case):
    bad = case.root / "p.npy"
    np.save(bad, np.random.default_rng(0).uniform(0.1, 0.9, size=(N, 3)))  # sigmoid-like
    case.freeze()
    res = case.discover("--predictions", bad, "--embeddings", case.emb)
    case.check(res, bad, "row 0 sums to", "not logits either")


def test_percentages_are_refused(case):
    bad = case.root / "p.npy"
    np.save(bad, 100 * np.random.default_rng(0).dirichlet(np.ones(3), size=N))
    case.freeze()
    res = case.discover("--predictions", bad, "--embeddings", case.emb)
    case.check(res, bad, "percentages")


def test_mostly_probabilities_with_a_bad_row(case):
    probs = np.random.default_rng(0).dirichlet(np.ones(3), size=N)
    probs[7] = [4.0, -1.0, 2.0]
    bad = case.root / "p.npy"
    np.save(bad, probs)
    case.freeze()
    res = case.discover("--predictions", bad, "--embeddings", case.emb)
    case.check(res, bad, f"1 of {N} rows are not probabilities", "row 7")


def test_zero_byte_predictions_csv(case):
    bad = case.root / "p.csv"
    bad.write_bytes(b"")
    case.freeze()
    res = case.discover("--predictions", bad, "--embeddings", case.emb)
    case.check(res, bad, "cannot read predictions file")


# --------------------------------------------------------------------------- embeddings files


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (lambda p: p.write_bytes(b""), "is empty (0 bytes)"),
        (lambda p: p.write_bytes(p.read_bytes()[:300]), "cannot be read as a .npy array"),
        (lambda p: np.save(p, np.float32(0.5)), "0-d array"),
        (lambda p: np.save(p, np.zeros(N, np.float32)), "must be 2-D"),
    ],
    ids=["zero-byte", "truncated", "0-d", "1-d"],
)
def test_bad_embeddings_npy(case, spoil, message):
    spoil(case.emb)
    case.freeze()
    res = case.discover("--predictions", case.preds, "--embeddings", case.emb)
    case.check(res, case.emb, message)


# --------------------------------------------------------------------------- manifests


def _spoil_manifest(case: Case, change) -> None:
    frame = pd.read_csv(case.manifest)
    change(frame).to_csv(case.manifest, index=False)
    case.freeze()


def test_duplicate_manifest_rows(case):
    def dup(f):
        return pd.concat([f, f.iloc[[4, 4, 9]]], ignore_index=True)

    _spoil_manifest(case, dup)
    res = case.discover("--predictions", case.preds, "--embeddings", case.emb)
    first = pd.read_csv(case.manifest)["path"][4]
    case.check(res, case.manifest, f"lists {first!r} 3 times", "rows 4, 36, 37", "3 duplicate rows")


def test_duplicate_manifest_rows_spelled_differently(case):
    def dup(f):
        f.loc[10, "path"] = "./img/../" + f.loc[3, "path"]
        return f

    _spoil_manifest(case, dup)
    res = case.discover("--predictions", case.preds, "--embeddings", case.emb)
    case.check(res, case.manifest, "2 times", "rows 3, 10")


def test_manifest_with_a_header_and_no_rows(case):
    _spoil_manifest(case, lambda f: f.iloc[:0])
    res = case.discover("--predictions", case.preds, "--embeddings", case.emb)
    case.check(res, case.manifest, "has a header but no rows")


def test_nul_byte_in_a_manifest_path(case):
    def nul(f):
        f.loc[6, "path"] = "img/val_ant\x00_006.png"
        return f

    _spoil_manifest(case, nul)
    res = case.discover("--predictions", case.preds, "--embeddings", case.emb)
    case.check(res, case.manifest, "row 6", "NUL byte")


def test_a_file_linked_into_two_classes(tmp_path, dataset_writer):
    tree = tmp_path / "tree"
    dataset_writer(tree, n_per_class=4, splits=("train",), layout="folder")
    (tree / "train" / "bee" / "999.png").symlink_to(tree / "train" / "ant" / "001.png")
    before = snapshot(tmp_path, exclude=(tmp_path / "run",))
    res = run_cli("-q", "discover", "--data", tree, "--predictions", "p.csv", "--out",
                  tmp_path / "run")  # fmt: skip
    assert_one_line_error(res, "discover", "train/bee/999.png", "train/ant/001.png", "same file")
    assert_untouched(before, tmp_path, exclude=(tmp_path / "run",))


# --------------------------------------------------------------------------- seeds and devices


def test_seed_beyond_64_bits(case):
    res = case.discover("--predictions", case.preds, "--embeddings", case.emb, "--seed", 2**64)
    case.check(res, "seed=18446744073709551616", "2**64 - 1")


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("cuda", "--device cuda: CUDA is not available"),
        ("cuda:0", "--device cuda:0: CUDA is not available"),
        ("mps", "--device mps: Apple's MPS is not available"),
        ("gpu0", "--device 'gpu0' is not one of cpu, cuda, mps"),
    ],
)
def test_unavailable_or_unknown_device(case, channel_classifier_ts, monkeypatch, device, message):
    import torch

    import failscope.data.models as models

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on a CPU-only machine
    monkeypatch.setattr(models, "_mps_available", lambda: False)
    res = case.discover(
        "--model", channel_classifier_ts, "--embeddings", case.emb, "--device", device
    )
    case.check(res, message)


# --------------------------------------------------------------------------- the audited model


def test_model_that_raises_in_forward(case, monkeypatch):
    spec = _write_module(
        case.root,
        "raising_model_mod",
        "class Broken(torch.nn.Module):\n"
        "    def forward(self, x):\n"
        "        raise RuntimeError('mat1 and mat2 shapes cannot be multiplied (64x3 and 5x3)')\n"
        "def make():\n    return Broken()\n",
    )
    case.freeze()
    monkeypatch.chdir(case.root)
    res = case.discover("--model", spec, "--embeddings", case.emb, "--batch-size", 16)
    first = pd.read_csv(case.manifest)["path"][0]
    case.check(res, "audited model Broken", "batch of 16 images", first, "mat1 and mat2")


def test_model_with_nan_logits(case, monkeypatch):
    spec = _write_module(
        case.root,
        "nan_model_mod",
        "class HalfNan(torch.nn.Module):\n"
        "    def forward(self, x):\n"
        "        out = 10 * x.mean(dim=(2, 3))\n"
        "        out[:2] = float('nan')\n"
        "        return out\n"
        "def make():\n    return HalfNan()\n",
    )
    case.freeze()
    monkeypatch.chdir(case.root)
    res = case.discover("--model", spec, "--embeddings", case.emb, "--batch-size", 12)
    paths = pd.read_csv(case.manifest)["path"]
    case.check(res, f"NaN or inf logits for 6 of {N} images", paths[0], paths[1], paths[12])


def test_image_of_another_size_without_resize(case, channel_classifier_ts):
    from PIL import Image

    paths = pd.read_csv(case.manifest)["path"]
    Image.new("RGB", (40, 40), (200, 60, 60)).save(case.data / paths[20])
    case.freeze()
    res = case.discover("--model", channel_classifier_ts, "--embeddings", case.emb)
    case.check(res, paths[20], "3x40x40", "3x32x32", "--image-size")


def test_image_of_another_size_in_a_later_batch(case, channel_classifier_ts):
    from PIL import Image

    paths = pd.read_csv(case.manifest)["path"]
    for k in range(24, N):  # the whole last batch is 40 px
        Image.new("RGB", (40, 40), (200, 60, 60)).save(case.data / paths[k])
    case.freeze()
    res = case.discover("--model", channel_classifier_ts, "--embeddings", case.emb,
                        "--batch-size", 12)  # fmt: skip
    case.check(res, paths[24], paths[0], "differs in size")


# --------------------------------------------------------------------------- CLIP


def test_offline_clip_weights_not_cached(case, no_network, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(case.root / "empty-hub"))
    monkeypatch.delenv("HF_HUB_OFFLINE")
    res = case.discover("--predictions", case.preds, "--clip", "ViT-B-32", "--offline")
    line = case.check(res, "ViT-B-32", "laion2b_s34b_b79k", "downloads are off", "--offline")
    assert "open_clip.create_model_and_transforms('ViT-B-32', pretrained='laion2b_s34b_b79k')" in (
        line
    )


def test_offline_hf_hub_clip_not_cached(case, no_network, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(case.root / "empty-hub"))
    res = case.discover("--predictions", case.preds, "--clip", "hf-hub:someorg/some-clip")
    case.check(res, "hf-hub:someorg/some-clip", "HF_HUB_OFFLINE=1", "create_model_and_transforms")


def test_malformed_hf_hub_name(case):
    res = case.discover("--predictions", case.preds, "--clip", "hf-hub:just-a-name")
    case.check(res, "hf-hub:just-a-name", "hf-hub:ORG/REPO")


def test_clip_is_checked_before_the_audited_model_loads(case, no_network, monkeypatch):
    marker = case.root / "loaded.txt"
    spec = _write_module(
        case.root,
        "marker_model_mod",
        f"def make():\n    open({str(marker)!r}, 'w').write('x')\n    return torch.nn.Flatten()\n",
    )
    monkeypatch.setenv("HF_HUB_CACHE", str(case.root / "empty-hub"))
    case.freeze()
    monkeypatch.chdir(case.root)
    res = case.discover("--model", spec, "--clip", "ViT-B-32")
    case.check(res, "ViT-B-32", "not in the local cache")
    assert not marker.exists()  # the model was never built


def test_clip_that_fails_on_a_batch(case, tiny_clip):
    from failscope.embed import _REGISTRY, add_clip_model, load_clip

    def factory(*, device, precision):
        clip = load_clip(str(tiny_clip.config), None, checkpoint=tiny_clip.checkpoint)

        def broken(x):
            raise RuntimeError("CUDA out of memory")

        clip.model.encode_image = broken
        return clip

    add_clip_model("broken-test-clip", factory)
    try:
        res = case.discover("--predictions", case.preds, "--clip", "broken-test-clip",
                            "--batch-size", 16)  # fmt: skip
    finally:
        _REGISTRY.pop("broken-test-clip")
    first = pd.read_csv(case.manifest)["path"][0]
    case.check(res, "CLIP broken-test-clip failed on a batch of 16 images", first, "out of memory")
