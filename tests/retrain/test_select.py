"""``failscope select``: a pool of unlabelled images ranked for each core slice."""

from __future__ import annotations

import pandas as pd
import pytest

import failscope
from failscope.retrain.select import select_pool
from tests.bad_inputs.harness import assert_one_line_error, assert_untouched, run_cli, snapshot


@pytest.fixture(scope="module")
def clip_run(tmp_path_factory, tiny_clip, channel_classifier_ts):
    """A run discovered with a real (tiny) CLIP and a TorchScript model: the planted
    images of each class (tinted with the next class's colour) are its failures."""
    from tests.conftest import write_image_dataset

    root = tmp_path_factory.mktemp("sel")
    write_image_dataset(root / "data", n_per_class=30, size=32)
    run = failscope.discover(
        root / "data" / "manifest.csv", model=str(channel_classifier_ts),
        clip=str(tiny_clip.config), clip_checkpoint=str(tiny_clip.checkpoint),
        out=root / "run", captions=False, report=False, min_examples=4,
    )  # fmt: skip
    pool = root / "pool"
    rows = write_image_dataset(pool, n_per_class=20, size=32, seed=5, splits=("x",))
    (pool / "manifest.csv").unlink()  # an unlabelled folder of images
    (pool / "img" / "broken.png").write_bytes(b"\x89PNG not really")
    planted = {
        str((pool / r["path"]).resolve()) for r in rows if r["planted"] and r["label"] == "ant"
    }
    return run, pool, planted


def test_select_ranks_the_slice_images_first_and_skips_unreadable_ones(clip_run):
    run, pool, planted = clip_run
    sid = run.slices_of(0)[0].id
    failscope.annotate(run, sid, "core")
    sel = select_pool(run, pool, per_slice=6)
    assert list(sel.frame.columns) == [
        "slice_id", "class_name", "rank", "score", "path", "audited_pred", "label",
    ]  # fmt: skip
    assert (sel.frame["slice_id"] == sid).all() and list(sel.frame["rank"]) == list(range(6))
    assert sel.frame["score"].is_monotonic_decreasing
    assert sum(p in planted for p in sel.frame["path"]) >= 5  # the slice's kind of image
    assert [s["path"] for s in sel.skipped] == ["img/broken.png"] and sel.n_pool == 61
    assert sel.out == run.path / "selection.csv" and run.owns("selection.csv")
    again = pd.read_csv(sel.out)
    assert list(again["path"]) == list(sel.frame["path"])


def test_cli_select_prints_the_counts_and_the_manifest(clip_run, tmp_path):
    run, pool, _ = clip_run
    out = tmp_path / "to_label.csv"
    res = run_cli("select", run.path, "--pool", pool, "--per-slice", 3,
                  "--slice", run.slices_of(1)[0].id, "--out", out)  # fmt: skip
    assert res.rc == 0, res.err
    assert "3 of 60 candidate pool images" in res.out and "skipped 1 unreadable" in res.out
    assert len(pd.read_csv(out)) == 3


@pytest.mark.parametrize(
    "argv, parts",
    [
        (["--pool", "EMPTY", "--per-slice", 3, "--slice", "0/0"], ["holds no images"]),
        (["--pool", "POOL", "--per-slice", 3, "--slice", "8/0"], ["no slice '8/0'"]),
        (["--pool", "POOL", "--per-slice", 0, "--slice", "0/0"], ["per_slice"]),
        (["--pool", "POOL", "--per-slice", 3], ["no slice annotated core"]),
        (
            ["--pool", "POOL", "--per-slice", 3, "--slice", "0/0", "--out", "USER"],
            ["not a selection manifest"],
        ),
    ],
)
def test_cli_select_bad_input(clip_run, tmp_path, argv, parts):
    run, pool, _ = clip_run
    (run.path / "annotations.json").unlink(missing_ok=True)
    (tmp_path / "empty").mkdir()
    (tmp_path / "user.csv").write_text("mine\n")
    subs = {"EMPTY": tmp_path / "empty", "POOL": pool, "USER": tmp_path / "user.csv"}
    argv = [subs.get(a, a) if isinstance(a, str) else a for a in argv]
    before = snapshot(run.path, exclude=(run.path / "cache",))
    res = run_cli("select", run.path, *argv)
    assert_one_line_error(res, "select", *parts)
    assert_untouched(before, run.path, exclude=(run.path / "cache",))
    assert (tmp_path / "user.csv").read_text() == "mine\n"
