"""CLIP loading (offline, never random by accident) and the resumable embedding cache."""

from __future__ import annotations

import os

import numpy as np
import pytest

from failscope import InputError
from failscope.data import load_dataset
from failscope.embed import (
    ClipModel,
    add_clip_model,
    embed_dataset,
    list_clip_models,
    load_clip,
    load_clip_from_spec,
    load_embeddings,
)


@pytest.fixture
def clip(tiny_clip) -> ClipModel:
    return load_clip(str(tiny_clip.config), None, checkpoint=tiny_clip.checkpoint, device="cpu")


# --------------------------------------------------------------------------- loading


def test_tiny_clip_loads_from_config_and_checkpoint(clip, tiny_clip):
    import torch

    assert clip.dim == 32 and clip.precision == "fp32" and not clip.random_init
    img = clip.encode_images(torch.rand(3, 3, 32, 32))
    txt = clip.encode_text(["a photo of an ant", "a bee", "a cat"], batch_size=2)
    for emb in (img, txt):
        assert emb.dtype == np.float32 and emb.shape == (3, 32)
        assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    spec = clip.spec()
    assert spec["checkpoint"] == str(tiny_clip.checkpoint.resolve())
    again = load_clip_from_spec(spec, device="cpu")
    assert again.identity == clip.identity
    x = torch.rand(2, 3, 32, 32)
    assert np.allclose(again.encode_images(x), clip.encode_images(x), atol=1e-6)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_low_precision_clip_encodes_like_fp32(clip, tiny_clip, precision):
    """fp16/bf16 towers take inputs in their own dtype (the path CUDA uses by default).

    open_clip keeps some top-level parameters in float32 when it converts a model, so
    the input dtype must come from the precision, not from the first parameter.
    """
    import torch

    low = load_clip(
        str(tiny_clip.config), None, checkpoint=tiny_clip.checkpoint, device="cpu",
        precision=precision,
    )  # fmt: skip
    assert low.precision == precision and low.identity != clip.identity
    x = torch.rand(4, 3, 32, 32)
    img = low.encode_images(x)
    assert img.dtype == np.float32 and img.shape == (4, 32)
    cos = (img * clip.encode_images(x)).sum(axis=1)
    assert cos.min() > 0.98
    txt = low.encode_text(["a photo of an ant", "a bee"])
    assert ((txt * clip.encode_text(["a photo of an ant", "a bee"])).sum(axis=1) > 0.98).all()


def test_identity_changes_with_other_weights(tiny_clip, tmp_path, clip):
    import torch

    state = torch.load(tiny_clip.checkpoint, weights_only=True)
    state["logit_scale"] = state["logit_scale"] + 1.0
    other = tmp_path / "other.pt"
    torch.save(state, other)
    assert (
        load_clip(str(tiny_clip.config), None, checkpoint=other, device="cpu").identity
        != clip.identity
    )
    same = tmp_path / "copy.pt"
    same.write_bytes(tiny_clip.checkpoint.read_bytes())
    assert (
        load_clip(str(tiny_clip.config), None, checkpoint=same, device="cpu").identity
        == clip.identity
    )


def test_missing_pretrained_weights_fail_offline_with_one_line(no_network, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError) as err:
        load_clip("ViT-B-32", "laion2b_s34b_b79k", device="cpu")
    msg = str(err.value)
    assert "\n" not in msg
    for part in ("ViT-B-32", "laion2b_s34b_b79k", "--clip-checkpoint", "--clip world", "hub"):
        assert part in msg
    with pytest.raises(InputError, match="unknown pretrained tag 'nope'"):
        load_clip("ViT-B-32", "nope", device="cpu")
    with pytest.raises(InputError, match="unknown CLIP 'NoSuchNet'"):
        load_clip("NoSuchNet", "x", device="cpu")


def test_random_weights_only_when_asked(tiny_clip, caplog):
    import torch

    with pytest.raises(InputError, match=r"random weights.*--clip-random-init"):
        load_clip(str(tiny_clip.config), None, device="cpu")
    a = load_clip(str(tiny_clip.config), None, device="cpu", random_init=True)
    b = load_clip(str(tiny_clip.config), None, device="cpu", random_init=True)
    assert a.random_init and a.spec()["random_init"]
    assert "RANDOM weights" in caplog.text
    x = torch.rand(2, 3, 32, 32)
    assert np.array_equal(a.encode_images(x), b.encode_images(x))  # seeded: reproducible


def test_registry_and_world_entry(tiny_clip, monkeypatch):
    assert "world" in list_clip_models()
    import failscope.world.clip as world_clip

    monkeypatch.setattr(world_clip, "WORLD_CLIP_CONFIG", tiny_clip.config)
    monkeypatch.setattr(world_clip, "WORLD_CLIP_WEIGHTS", tiny_clip.checkpoint)
    world = load_clip("world", device="cpu")
    assert world.registered and world.name == "world" and world.dim == 32
    assert world.spec()["registered"]
    with pytest.raises(InputError, match="does not apply to the registered CLIP 'world'"):
        load_clip("world", checkpoint=tiny_clip.checkpoint)

    calls = []

    def factory(*, device, precision):
        calls.append((device, precision))
        inner = load_clip(str(tiny_clip.config), None, checkpoint=tiny_clip.checkpoint)
        return inner.model, inner.preprocess, inner.tokenizer

    add_clip_model("tiny-registered", factory)
    assert "tiny-registered" in list_clip_models()
    reg = load_clip("tiny-registered", device="cpu")
    assert calls == [("cpu", "fp32")] and reg.registered and len(reg.identity) == 64


# --------------------------------------------------------------------------- the cache


class Killed(Exception):
    """Stands in for a crash (or Ctrl-C) in the middle of the extraction."""


class _Counter:
    """Wraps ``clip.encode_images`` counting batches and images."""

    def __init__(self, clip: ClipModel, fail_after: int | None = None):
        self.inner = ClipModel.encode_images.__get__(clip)  # the real method, not a wrapper
        self.batches = 0
        self.images = 0
        self.fail_after = fail_after
        clip.encode_images = self  # instance attribute shadows the method

    def __call__(self, pixels):
        if self.fail_after is not None and self.batches >= self.fail_after:
            raise Killed
        self.batches += 1
        self.images += len(pixels)
        return self.inner(pixels)


def test_cache_resumes_after_interruption_and_matches(image_dataset, clip, tmp_path):
    ds = load_dataset(image_dataset.manifest)
    full, skipped = embed_dataset(ds, clip, cache_dir=tmp_path / "full", batch_size=16)
    assert isinstance(full, np.memmap) and full.shape == (144, 32) and skipped == []
    assert np.allclose(np.linalg.norm(full, axis=1), 1.0, atol=1e-5)

    count = _Counter(clip, fail_after=4)
    with pytest.raises(Killed):
        embed_dataset(ds, clip, cache_dir=tmp_path / "c", batch_size=16, flush_seconds=3600)
    assert count.batches == 4  # 64 rows finished before the "kill"
    count = _Counter(clip)
    progress = []
    emb, _ = embed_dataset(
        ds, clip, cache_dir=tmp_path / "c", batch_size=16, progress=lambda d, t: progress.append(d)
    )
    assert count.images == 144 - 64 and count.batches == 5
    assert progress[0] == 64 and progress[-1] == 144
    assert np.allclose(emb, full, atol=1e-6)

    count = _Counter(clip)  # a re-run computes nothing
    emb2, _ = embed_dataset(ds, clip, cache_dir=tmp_path / "c", batch_size=16)
    assert count.images == 0 and np.array_equal(np.asarray(emb2), np.asarray(emb))


def test_cache_recomputes_changed_files_only(image_dataset, clip, tmp_path):
    from PIL import Image

    ds = load_dataset(image_dataset.manifest)
    before, _ = embed_dataset(ds, clip, cache_dir=tmp_path, batch_size=32)
    before = np.array(before)
    target = image_dataset.root / image_dataset.rows[7]["path"]
    Image.fromarray(np.full((32, 32, 3), 255, np.uint8)).save(target)
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    count = _Counter(clip)
    after, _ = embed_dataset(ds, clip, cache_dir=tmp_path, batch_size=32)
    assert count.images == 1
    changed = ~np.isclose(np.asarray(after), before).all(axis=1)
    assert changed.tolist() == [i == 7 for i in range(144)]


def test_cache_reuses_rows_when_the_dataset_grows(image_dataset, clip, tmp_path):
    import pandas as pd

    frame = pd.read_csv(image_dataset.manifest)
    frame.iloc[:100].to_csv(tmp_path / "small.csv", index=False)
    for p in frame["path"]:
        (tmp_path / p).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / p).write_bytes((image_dataset.root / p).read_bytes())
    small, _ = embed_dataset(load_dataset(tmp_path / "small.csv"), clip, cache_dir=tmp_path / "c")
    small = np.array(small)
    frame.iloc[::-1].to_csv(tmp_path / "all.csv", index=False)  # reversed and larger
    count = _Counter(clip)
    big, _ = embed_dataset(load_dataset(tmp_path / "all.csv"), clip, cache_dir=tmp_path / "c")
    assert count.images == 44
    assert np.allclose(np.asarray(big)[::-1][:100], small, atol=1e-6)


def test_skipped_images_are_nan_rows_and_retried(image_dataset, clip, tmp_path):
    (image_dataset.root / image_dataset.rows[3]["path"]).unlink()
    (image_dataset.root / image_dataset.rows[5]["path"]).write_bytes(b"not an image")
    ds = load_dataset(image_dataset.manifest)
    emb, skipped = embed_dataset(ds, clip, cache_dir=tmp_path, batch_size=32)
    assert [s["id"] for s in skipped] == [3, 5]
    assert skipped[0] == {"id": 3, "path": image_dataset.rows[3]["path"], "reason": "missing file"}
    bad = ~np.isfinite(emb).all(axis=1)
    assert np.flatnonzero(bad).tolist() == [3, 5]
    count = _Counter(clip)
    _, skipped = embed_dataset(ds, clip, cache_dir=tmp_path, batch_size=32)
    assert count.images == 0 and [s["id"] for s in skipped] == [3, 5]


def test_cache_of_the_first_release_is_reused_and_other_formats_rebuilt(
    image_dataset, clip, tmp_path
):
    """The embedding cache kept its layout (format 1) when it became a RowCache."""
    import json

    from failscope.embed import embedding_cache_folder

    ds = load_dataset(image_dataset.manifest)
    first, _ = embed_dataset(ds, clip, cache_dir=tmp_path, batch_size=32)
    first = np.array(first)
    folder = embedding_cache_folder(tmp_path, clip)
    assert sorted(p.name for p in folder.iterdir()) == ["embeddings.npy", "keys.npy", "meta.json"]
    old_meta = {"format": 1, "identity": clip.identity, "dim": 32, "clip": clip.spec()}
    (folder / "meta.json").write_text(json.dumps(old_meta))  # as the first release wrote it
    count = _Counter(clip)
    again, _ = embed_dataset(ds, clip, cache_dir=tmp_path, batch_size=32)
    assert count.images == 0 and np.array_equal(np.asarray(again), first)
    (folder / "meta.json").write_text(json.dumps(dict(old_meta, format=2)))  # a later layout
    count = _Counter(clip)
    rebuilt, _ = embed_dataset(ds, clip, cache_dir=tmp_path, batch_size=32)
    assert count.images == 144 and np.allclose(rebuilt, first, atol=1e-6)
    assert json.loads((folder / "meta.json").read_text())["format"] == 1


def test_precomputed_embeddings(tmp_path):
    x = np.random.default_rng(0).normal(size=(10, 4))
    np.save(tmp_path / "e.npy", x)  # float64 -> converted to a float32 memmap
    emb = load_embeddings(tmp_path / "e.npy", 10, cache_dir=tmp_path / "c")
    assert emb.dtype == np.float32 and isinstance(emb, np.memmap)
    assert np.allclose(emb, x, atol=1e-6)
    with pytest.raises(InputError, match="has 10 rows but the dataset has 11 examples"):
        load_embeddings(tmp_path / "e.npy", 11)


_KILLED_SCRIPT = """
import pathlib, sys, time
import torch
torch.set_num_threads(1)
from failscope.data import load_dataset
from failscope.embed import embed_dataset, load_clip
config, ckpt, manifest, cache, marker = sys.argv[1:]
clip = load_clip(config, None, checkpoint=ckpt, device="cpu")
def progress(done, total):
    if done >= 64:
        pathlib.Path(marker).write_text(str(done))
        time.sleep(600)  # wait to be killed
embed_dataset(load_dataset(manifest), clip, cache_dir=cache, batch_size=16,
              flush_seconds=0, progress=progress)
"""


def test_cache_survives_sigkill(image_dataset, clip, tiny_clip, tmp_path, cli_env):
    import signal
    import subprocess
    import sys
    import time

    marker = tmp_path / "marker"
    args = [tiny_clip.config, tiny_clip.checkpoint, image_dataset.manifest, tmp_path / "c", marker]
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_SCRIPT, *map(str, args)],
        env=cli_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the extraction never reached 64 rows"
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    ds = load_dataset(image_dataset.manifest)
    count = _Counter(clip)
    emb, _ = embed_dataset(ds, clip, cache_dir=tmp_path / "c", batch_size=16)
    assert count.images == 144 - 64
    full, _ = embed_dataset(ds, clip, cache_dir=tmp_path / "full", batch_size=16)
    assert np.allclose(emb, full, atol=1e-6)


# --------------------------------------------------------------------------- downloads


@pytest.fixture
def fake_tag(tiny_clip, monkeypatch):
    """A pretrained tag ``faketag`` of the tiny CLIP architecture, with a URL cfg."""
    import open_clip

    open_clip.add_model_config(tiny_clip.config)  # "tiny-test-clip"
    cfg = {"url": "https://example.invalid/tiny/tiny-weights.pt", "hf_hub": "",
           "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}  # fmt: skip
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, "tiny-test-clip", {"faketag": cfg})
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return cfg


def test_offline_never_downloads_and_says_how_to_fetch(fake_tag, no_network, tmp_path, monkeypatch):
    import open_clip

    def download(*args, **kwargs):
        raise AssertionError("open_clip's downloader called while offline")

    monkeypatch.setattr(open_clip, "download_pretrained", download)
    for env, offline in (("0", True), ("1", False)):
        monkeypatch.setenv("HF_HUB_OFFLINE", env)
        with pytest.raises(InputError) as err:
            load_clip("tiny-test-clip", "faketag", cache_dir=str(tmp_path), offline=offline)
        msg = str(err.value)
        assert "\n" not in msg and len(msg) <= 500
        assert "downloads are off (--offline or HF_HUB_OFFLINE=1)" in msg
        assert str(tmp_path / "tiny-weights.pt") in msg  # where it looked
        command = (
            'python -c "import open_clip; open_clip.create_model_and_transforms('
            f"'tiny-test-clip', pretrained='faketag', cache_dir={str(tmp_path)!r})\""
        )
        assert command in msg and "--clip-checkpoint PATH or --clip world" in msg


def test_missing_weights_are_downloaded_by_open_clip_once(
    fake_tag, tiny_clip, no_network, tmp_path, monkeypatch
):
    import shutil

    import open_clip
    import torch

    calls = []

    def download(cfg, prefer_hf_hub=True, cache_dir=None):
        calls.append((cfg, cache_dir))
        target = os.path.join(cache_dir, "tiny-weights.pt")
        shutil.copy(tiny_clip.checkpoint, target)
        return target

    monkeypatch.setattr(open_clip, "download_pretrained", download)
    clip = load_clip("tiny-test-clip", "faketag", cache_dir=str(tmp_path), device="cpu")
    assert calls == [(fake_tag, str(tmp_path))]  # open_clip's own downloader, the tag's cfg
    assert clip.pretrained == "faketag" and not clip.random_init and clip.checkpoint is None
    assert clip.preprocess_cfg["mean"] == [0.5, 0.5, 0.5]  # the tag's preprocessing
    ref = load_clip(str(tiny_clip.config), None, checkpoint=tiny_clip.checkpoint, device="cpu")
    x = torch.rand(2, 3, 32, 32)
    assert np.allclose(clip.encode_images(x), ref.encode_images(x), atol=1e-6)  # the weights
    again = load_clip("tiny-test-clip", "faketag", cache_dir=str(tmp_path), device="cpu")
    assert len(calls) == 1 and again.identity == clip.identity  # now read from the cache


def test_a_failed_download_is_one_line_and_never_random(fake_tag, tmp_path, monkeypatch):
    import open_clip

    def download(cfg, prefer_hf_hub=True, cache_dir=None):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(open_clip, "download_pretrained", download)
    with pytest.raises(InputError) as err:
        load_clip("tiny-test-clip", "faketag", cache_dir=str(tmp_path))
    msg = str(err.value)
    assert msg.startswith("downloading the weights of CLIP tiny-test-clip pretrained='faketag'")
    assert "name resolution" in msg and "create_model_and_transforms" in msg


def _hub_snapshot(hub, repo, tiny_clip, rev="0123abcd"):
    """Write ``repo`` in the Hugging Face hub cache layout: config + weights, refs/main."""
    import json
    import shutil

    folder = hub / f"models--{repo.replace('/', '--')}"
    snap = folder / "snapshots" / rev
    snap.mkdir(parents=True, exist_ok=True)
    model_cfg = json.loads(tiny_clip.config.read_text())
    (snap / "open_clip_config.json").write_text(
        json.dumps(
            {"model_cfg": model_cfg, "preprocess_cfg": {"mean": [0.5] * 3, "std": [0.5] * 3}}
        )
    )
    shutil.copy(tiny_clip.checkpoint, snap / "open_clip_pytorch_model.bin")
    (folder / "refs").mkdir(exist_ok=True)
    (folder / "refs" / "main").write_text(rev)
    return snap


def test_hf_hub_names_load_from_the_hub_cache_offline(tiny_clip, no_network, tmp_path, monkeypatch):
    import torch

    hub = tmp_path / "hub"
    snap = _hub_snapshot(hub, "some-org/tiny-clip", tiny_clip)
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    clip = load_clip("hf-hub:some-org/tiny-clip", device="cpu", offline=True)
    assert clip.name == "hf-hub:some-org/tiny-clip" and clip.pretrained is None
    assert clip.preprocess_cfg["mean"] == [0.5, 0.5, 0.5] and clip.dim == 32
    ref = load_clip(str(tiny_clip.config), None, checkpoint=tiny_clip.checkpoint, device="cpu")
    x = torch.rand(2, 3, 32, 32)
    assert np.allclose(clip.encode_images(x), ref.encode_images(x), atol=1e-6)
    again = load_clip_from_spec(clip.spec(), device="cpu")  # run.json -> the same CLIP
    assert again.identity == clip.identity
    (snap / "open_clip_pytorch_model.bin").unlink()  # config cached, weights not
    with pytest.raises(InputError, match=r"files of CLIP hf-hub:some-org/tiny-clip are not in"):
        load_clip("hf-hub:some-org/tiny-clip", device="cpu", offline=True)


def test_hf_hub_names_are_downloaded_by_open_clip(tiny_clip, no_network, tmp_path, monkeypatch):
    from open_clip import pretrained as oc_pretrained

    hub = tmp_path / "hub"
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    calls = []

    def download(model_id, filename=None, revision=None, cache_dir=None):
        calls.append((model_id, filename, cache_dir))
        snap = _hub_snapshot(hub, model_id, tiny_clip)
        return str(snap / (filename or "open_clip_pytorch_model.bin"))

    monkeypatch.setattr(oc_pretrained, "download_pretrained_from_hf", download)
    clip = load_clip("hf-hub:some-org/tiny-clip", device="cpu", cache_dir=str(hub))
    assert calls == [
        ("some-org/tiny-clip", "open_clip_config.json", str(hub)),
        ("some-org/tiny-clip", None, str(hub)),
    ]
    assert clip.dim == 32 and clip.name == "hf-hub:some-org/tiny-clip"


# --------------------------------------------------------------------------- cache keys


def test_content_cache_key_sees_a_same_size_edit_that_keeps_the_mtime(clip, tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for k in range(6):  # BMP: the file size depends on the image size only
        paths.append(f"{k}.bmp")
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(
            tmp_path / paths[-1]
        )
    import pandas as pd

    pd.DataFrame({"path": paths, "label": ["a", "b"] * 3}).to_csv(tmp_path / "m.csv", index=False)
    ds = load_dataset(tmp_path / "m.csv")
    stat_emb, _ = embed_dataset(ds, clip, cache_dir=tmp_path / "s")
    content_emb, _ = embed_dataset(ds, clip, cache_dir=tmp_path / "c", cache_key="content")
    assert np.array_equal(np.asarray(stat_emb), np.asarray(content_emb))
    stat_emb, content_emb = np.array(stat_emb), np.array(content_emb)

    target = tmp_path / paths[2]
    st = target.stat()
    Image.fromarray(np.full((32, 32, 3), 255, np.uint8)).save(target)  # same size, new pixels
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # and the old mtime
    assert target.stat().st_size == st.st_size and target.stat().st_mtime_ns == st.st_mtime_ns

    count = _Counter(clip)
    stale, _ = embed_dataset(ds, clip, cache_dir=tmp_path / "s")  # stat trusts (path, size, mtime)
    assert count.images == 0 and np.array_equal(np.asarray(stale), stat_emb)
    fresh, _ = embed_dataset(ds, clip, cache_dir=tmp_path / "c", cache_key="content")
    assert count.images == 1
    changed = ~np.isclose(np.asarray(fresh), content_emb).all(axis=1)
    assert changed.tolist() == [False, False, True, False, False, False]
    with pytest.raises(InputError, match=r"cache_key='inode' is not one of"):
        ds.file_keys("inode")


def test_discover_records_the_clip_actually_used(image_dataset, tiny_clip, tmp_path, monkeypatch):
    """The world CLIP has no pretrained tag: run.json must not claim the default one."""
    import pandas as pd

    import failscope.world.clip as world_clip
    from failscope.cli import build_parser
    from failscope.pipeline import discover

    monkeypatch.setattr(world_clip, "WORLD_CLIP_CONFIG", tiny_clip.config)
    monkeypatch.setattr(world_clip, "WORLD_CLIP_WEIGHTS", tiny_clip.checkpoint)
    preds = tmp_path / "p.csv"
    pd.DataFrame({"pred": [r["label"] for r in image_dataset.rows]}).to_csv(preds, index=False)
    run = discover(
        image_dataset.manifest, out=tmp_path / "run", predictions=preds, clip="world",
        cache_key="content", captions=False, report=False,
    )  # fmt: skip
    assert run.config.clip_pretrained is None  # was "laion2b_s34b_b79k"
    assert run.info.embeddings.clip.pretrained is None
    assert run.config.cache_key == "content"
    with pytest.raises(InputError, match="cache_key='mtime' is not one of"):
        discover(image_dataset.manifest, out=tmp_path / "r2", predictions=preds, cache_key="mtime")
    args = build_parser().parse_args(
        ["discover", "--data", "d", "--out", "o", "--predictions", "p", "--cache-key", "content",
         "--offline"]
    )  # fmt: skip
    assert args.cache_key == "content" and args.offline
