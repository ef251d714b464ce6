"""``--engine ray`` on a local Ray instance started here (2 CPUs): same results as local,
resumable after SIGKILL, one-line errors. Select with ``-m ray``; part of the normal suite.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

# Ray's local instance on the loopback address only (else it binds the machine's interface)
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import ray  # imported after the variable above

import failscope
from failscope import InputError
from failscope.data import load_dataset, load_model, model_spec, model_transform, predict
from failscope.embed import embed_dataset, embedding_cache, load_clip
from failscope.engines import EngineOptions
from failscope.engines.local import model_identity, predictions_cache
from failscope.engines.ray_data import fill_caches

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def ray_address():
    """A local Ray instance for this module's tests; its GCS address."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture
def clip(tiny_clip):
    return load_clip(str(tiny_clip.config), None, checkpoint=tiny_clip.checkpoint, device="cpu")


def test_ray_engine_matches_the_local_engine(
    image_dataset, channel_classifier_ts, tiny_clip, clip, ray_address, tmp_path, capsys, cli
):
    rows = image_dataset.rows
    (image_dataset.root / rows[4]["path"]).unlink()
    (image_dataset.root / rows[100]["path"]).write_bytes(b"GIF89a truncated")
    common = dict(model=str(channel_classifier_ts), captions=False, report=False, batch_size=16)
    local = failscope.discover(image_dataset.manifest, out=tmp_path / "local", clip=clip, **common)
    rc = cli([
        "-q", "discover", "--data", str(image_dataset.manifest), "--model",
        str(channel_classifier_ts), "--clip", str(tiny_clip.config), "--clip-checkpoint",
        str(tiny_clip.checkpoint), "--engine", "ray", "--ray-actors", "1", "--batch-size", "16",
        "--no-captions", "--no-report", "--out", str(tmp_path / "ray"),
    ])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    run = failscope.load_run(tmp_path / "ray")
    eng = run.info.engine
    assert (eng["rows_missing"], eng["embedded"], eng["predicted"], eng["dropped"]) == (
        144, 142, 142, 2,
    )  # fmt: skip
    assert run.config.engine == "ray" and "ray" in run.info.timings
    # the same skipped images, with the local engine's reasons
    assert run.skipped == local.skipped and [s.id for s in run.skipped] == [4, 100]
    assert run.skipped[0].reason == "missing file"
    cos = (np.asarray(run.embeddings()) * np.asarray(local.embeddings())).sum(axis=1)
    assert cos.min() >= 0.9999
    a, b = local.examples, run.examples
    assert a["id"].tolist() == b["id"].tolist()
    assert a["pred"].tolist() == b["pred"].tolist()
    assert np.allclose(a["confidence"], b["confidence"], atol=1e-6)
    assert a["slice"].tolist() == b["slice"].tolist()
    assert [s.to_json() for s in run.slices] == [s.to_json() for s in local.slices]
    assert run.classes == local.classes
    assert np.allclose(run.directions, local.directions, atol=1e-3)

    # a re-run computes only what is missing: the two unreadable images, which Ray skips
    again = failscope.discover(
        image_dataset.manifest, out=tmp_path / "ray", clip=clip, engine="ray", **common
    )
    eng = again.info.engine
    assert (eng["rows_missing"], eng["embedded"], eng["predicted"], eng["dropped"]) == (2, 0, 0, 2)
    assert eng["startup_seconds"] is None  # no pipeline was started for unreadable rows
    assert again.examples["pred"].tolist() == a["pred"].tolist()


_KILLED_SCRIPT = """
import os, pathlib, sys, time
from failscope.data import load_dataset, load_model, model_spec
from failscope.embed import load_clip
from failscope.engines import EngineOptions
from failscope.engines.ray_data import fill_caches
config, ckpt, model, manifest, cache, marker, address = sys.argv[1:]
clip = load_clip(config, None, checkpoint=ckpt, device="cpu")
ds = load_dataset(manifest)
spec = model_spec(model, num_classes=3)
def progress(done, total):
    if done >= 64:
        pathlib.Path(marker).write_text(str(done))
        time.sleep(600)  # wait to be killed
fill_caches(ds, options=EngineOptions(engine="ray", ray_address=address), clip=clip,
            model_spec=spec, module=load_model(spec), cache_dir=cache, batch_size=16,
            progress=progress, flush_seconds=0)
"""


def test_a_killed_ray_run_resumes_without_recomputing_finished_rows(
    image_dataset, channel_classifier_ts, tiny_clip, clip, ray_address, tmp_path, cli_env
):
    marker, cache = tmp_path / "marker", tmp_path / "cache"
    args = [tiny_clip.config, tiny_clip.checkpoint, channel_classifier_ts,
            image_dataset.manifest, cache, marker, ray_address]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_SCRIPT, *map(str, args)],
        env=cli_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the Ray run never reached 64 rows"
            time.sleep(0.2)
        time.sleep(0.2)  # the marker is written; the driver sleeps in the callback
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    finished = int(marker.read_text())
    assert 64 <= finished < 144

    ds = load_dataset(image_dataset.manifest)
    spec = model_spec(str(channel_classifier_ts), num_classes=3)
    module = load_model(spec)
    emb_cache = embedding_cache(cache, clip)
    pred_cache = predictions_cache(cache, model_identity(spec, module), spec)
    done_before = {}
    for name, c in (("clip", emb_cache), ("model", pred_cache)):
        with c.open(ds.file_keys()) as rows:
            todo = rows.todo()
            assert len(todo) == 144 - finished  # every reported row was flushed and marked done
            kept = np.setdiff1d(np.arange(144), todo)
            done_before[name] = (kept, np.array(rows.rows[kept]))

    stats = fill_caches(
        ds, options=EngineOptions(engine="ray"), clip=clip, model_spec=spec, module=module,
        cache_dir=cache, batch_size=16,
    )  # fmt: skip
    assert stats["rows_missing"] == 144 - finished
    assert stats["embedded"] == stats["predicted"] == 144 - finished  # only the missing rows
    with emb_cache.open(ds.file_keys()) as rows:
        emb = np.array(rows.read())
        assert len(rows.todo()) == 0
    with pred_cache.open(ds.file_keys()) as rows:
        pred = np.array(rows.read())
    for name, arr in (("clip", emb), ("model", pred)):
        kept, values = done_before[name]
        assert np.array_equal(arr[kept], values)  # finished rows were not rewritten
    full, _ = embed_dataset(ds, clip, cache_dir=tmp_path / "local", batch_size=16)
    assert (emb * np.asarray(full)).sum(axis=1).min() >= 0.9999
    ref = predict(ds, module, model_transform(spec), batch_size=16)
    assert pred[:, 0].astype(np.int64).tolist() == ref.pred.tolist()


def test_images_of_different_sizes_fail_with_one_line_from_a_ray_task(
    dataset_writer, channel_classifier_ts, clip, ray_address, tmp_path
):
    from PIL import Image

    rows = dataset_writer(tmp_path / "data", n_per_class=8, splits=("val",))
    Image.new("RGB", (40, 40)).save(tmp_path / "data" / rows[-1]["path"])  # no --image-size
    with pytest.raises(InputError, match=r"images of different sizes.*--image-size") as err:
        failscope.discover(
            tmp_path / "data" / "manifest.csv", out=tmp_path / "run", clip=clip,
            model=str(channel_classifier_ts), engine="ray", captions=False, report=False,
        )  # fmt: skip
    assert "\n" not in str(err.value) and rows[-1]["path"] in str(err.value)


def test_an_nn_module_object_is_refused(image_dataset, channel_classifier, clip, tmp_path):
    with pytest.raises(InputError, match=r"cannot take an nn.Module object.*module:function"):
        failscope.discover(
            image_dataset.manifest, out=tmp_path / "run", model=channel_classifier, clip=clip,
            engine="ray", captions=False, report=False,
        )  # fmt: skip
