"""Bad CLI inputs and failing writes: one line naming the path, exit 2, nothing else touched."""

from __future__ import annotations

import errno

import pytest

from failscope._validation import InputError
from failscope.run import load_run
from tests.bad_inputs.harness import (
    assert_one_line_error,
    assert_untouched,
    run_cli,
    small_discover_args,
    snapshot,
)


@pytest.fixture
def discover_args(dataset_writer, tmp_path):
    """``discover`` arguments for a small dataset given as predictions + embeddings."""
    return small_discover_args(dataset_writer, tmp_path)


def test_out_is_an_existing_file(discover_args, tmp_path):
    out = tmp_path / "notes.txt"
    out.write_text("my notes\n")
    before = snapshot(tmp_path)
    res = run_cli("discover", *discover_args, "--out", out)
    assert_one_line_error(res, "discover", str(out))
    assert_untouched(before, tmp_path)


def test_out_not_writable(discover_args, tmp_path, monkeypatch):
    # as root a chmod does not stop writes, so the write fails the way a read-only folder does
    out = tmp_path / "run"

    def refuse(path, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr("failscope.pipeline.write_examples", refuse)
    res = run_cli("discover", *discover_args, "--out", out)
    line = assert_one_line_error(res, "discover", "Permission denied", str(out))
    assert "permissions" in line


def _disk_full_rerun(discover_args, out, monkeypatch):
    assert run_cli("discover", *discover_args, "--out", out).rc == 0

    def full(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("failscope.pipeline.write_examples", full)
    res = run_cli("discover", *discover_args, "--threshold", "topk:3", "--out", out)
    return assert_one_line_error(res, "discover", "No space left on device", str(out))


def test_disk_full_says_what_is_left(discover_args, tmp_path, monkeypatch):
    out = tmp_path / "run"
    line = _disk_full_rerun(discover_args, out, monkeypatch)
    try:
        load_run(out)
        readable = True
    except InputError:
        readable = False
    if readable:
        assert line.endswith(f"; the earlier run in {out} is intact")
    else:
        assert line.endswith(f"; no readable run is left in {out}")


def test_disk_full_keeps_the_earlier_run(discover_args, tmp_path, monkeypatch):
    out = tmp_path / "run"
    line = _disk_full_rerun(discover_args, out, monkeypatch)
    assert line.endswith("is intact")
    assert load_run(out).config.threshold == "zero"


def _small_run(path):
    from runbuilder import build_run, planted_world

    w = planted_world(n_classes=2)
    keys = ("embeddings", "labels", "predictions", "splits")
    return build_run(path, class_names=["a", "b"], **{k: w[k] for k in keys}).path


def test_report_out_is_a_folder(tmp_path):
    run = _small_run(tmp_path / "run")
    folder = tmp_path / "site"
    folder.mkdir()
    before = snapshot(tmp_path)
    res = run_cli("report", run, "--out", folder)
    assert_one_line_error(res, "report", f"--out {folder} is a folder", "report.html")
    assert_untouched(before, tmp_path)


@pytest.mark.parametrize(
    ("argv", "parts"),
    [
        (("check", "{run}"), ("give at least one bar",)),
        (("check", "{run}", "--max-error-rate", "2"), ("--max-error-rate=2.0", "[0, 1]")),
        (("check", "{missing}", "--max-error-rate", "0.1"), ("run directory not found",)),
        (("caption", "{run}", "--clip-pretrained", "x"), ("--clip NAME",)),
        (("evaluate", "{missing}"), ("run directory not found",)),
        (("retrain", "{missing}"), ("run directory not found",)),
    ],
)
def test_bad_arguments(argv, parts, tmp_path):
    run = _small_run(tmp_path / "run")
    before = snapshot(tmp_path)
    args = [a.format(run=run, missing=tmp_path / "missing") for a in argv]
    assert_one_line_error(run_cli(*args), argv[0], *parts)
    assert_untouched(before, tmp_path)
