"""``RUN/annotations.json`` through the Python API and ``failscope review --set``."""

from __future__ import annotations

import json
import multiprocessing
import threading

import pytest

import failscope
from failscope._validation import InputError
from failscope.review import (
    VersionConflict,
    annotations_by_slice,
    read_annotations,
    remove_annotation,
    save_annotation,
)
from failscope.run import load_run
from tests.bad_inputs.harness import assert_one_line_error, assert_untouched, run_cli, snapshot


def test_annotate_writes_a_versioned_file_of_this_run(make_run):
    run = make_run()
    a, b = (s.id for s in run.slices[:2])
    assert read_annotations(run).version == 0 and read_annotations(run).annotations == ()
    ann = failscope.annotate(run, a, "core", note="  under-served  ", by="tester")
    assert ann.version == 1 and ann.run_id == run.info.run_id
    failscope.annotate(run, b, "noisy")
    ann = failscope.annotate(run, a, "spurious")  # a new verdict replaces the old one
    on_disk = json.loads((run.path / "annotations.json").read_text())
    assert on_disk["version"] == 3 and on_disk["format"] == 2
    assert [(x["slice_id"], x["label"]) for x in on_disk["annotations"]] == [
        (a, "spurious"), (b, "noisy"),
    ]  # fmt: skip
    assert "annotations.json" in load_run(run.path).info.files  # failscope's own file now
    assert annotations_by_slice(run.path)[b].label == "noisy"
    assert remove_annotation(run, b).version == 4
    assert set(annotations_by_slice(run)) == {a}


def test_note_is_stripped_and_kept(make_run):
    run = make_run()
    sid = run.slices[0].id
    failscope.annotate(run, sid, "core", note="  small 3s  ")
    assert annotations_by_slice(run)[sid].note == "small 3s"


def test_compare_and_swap_on_version(make_run):
    run = make_run()
    a, b = (s.id for s in run.slices[:2])
    failscope.annotate(run, a, "core", version=0)
    with pytest.raises(VersionConflict) as err:
        failscope.annotate(run, b, "noisy", version=0)  # strict: any change since is a conflict
    assert err.value.current.version == 1
    # based on version 0 but with the slice as it was then (unannotated): it lands
    assert save_annotation(run, b, "noisy", version=0, expect=None).version == 2
    # the same slice changed since: refused, the file is unchanged
    seen = annotations_by_slice(run)[a].to_json()
    failscope.annotate(run, a, "spurious")
    with pytest.raises(VersionConflict):
        save_annotation(run, a, "not-a-failure", version=2, expect=seen)
    assert annotations_by_slice(run)[a].label == "spurious"


def test_concurrent_threads_lose_no_update(make_run):
    run = make_run(n_classes=6)
    ids = [s.id for s in run.slices]
    assert len(ids) >= 4
    barrier = threading.Barrier(len(ids))

    def save(sid: str) -> None:
        barrier.wait()
        save_annotation(run, sid, "core", version=0, expect=None)

    threads = [threading.Thread(target=save, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ann = read_annotations(run)
    assert ann.version == len(ids) and {a.slice_id for a in ann.annotations} == set(ids)


def _save_in_process(path: str, sid: str, label: str) -> None:
    failscope.annotate(path, sid, label)


def test_concurrent_processes_lose_no_update(make_run):
    run = make_run(n_classes=6)
    ids = [s.id for s in run.slices]
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_save_in_process, args=(str(run.path), i, "noisy")) for i in ids]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * len(ids)
    ann = read_annotations(load_run(run.path))
    assert ann.version == len(ids) and {a.slice_id for a in ann.annotations} == set(ids)


def test_a_hand_written_file_is_read_and_then_kept_up_to_date(make_run):
    run = make_run()
    a, b = (s.id for s in run.slices[:2])
    hand = {
        "format": 2, "run_id": run.info.run_id, "version": 7,
        "annotations": [{"slice_id": a, "label": "not-a-failure", "note": None,
                         "updated": "2026-01-01T00:00:00Z"}],
    }  # fmt: skip
    (run.path / "annotations.json").write_text(json.dumps(hand))
    assert annotations_by_slice(run)[a].label == "not-a-failure"
    ann = failscope.annotate(run, b, "core")
    assert ann.version == 8 and {x.slice_id for x in ann.annotations} == {a, b}


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda d: d.update(run_id="0" * 32), "written for another run"),
        (lambda d: d.update(format=1), "format 1"),
        (lambda d: d.update(format=9), "format 9"),
        (lambda d: d["annotations"][0].update(label="maybe"), "label must be one of"),
        (lambda d: d["annotations"][0].update(slice_id="77/0"), "'77/0' is not a slice"),
        (lambda d: d["annotations"].append(dict(d["annotations"][0])), "annotated twice"),
        (lambda d: d.pop("version"), "no key 'version'"),
    ],
)
def test_bad_annotation_files_are_refused_in_one_line(make_run, change, expected):
    run = make_run()
    data = {
        "format": 2, "run_id": run.info.run_id, "version": 1,
        "annotations": [{"slice_id": run.slices[0].id, "label": "core", "note": None,
                         "updated": "2026-01-01T00:00:00Z"}],
    }  # fmt: skip
    change(data)
    (run.path / "annotations.json").write_text(json.dumps(data))
    before = snapshot(run.path)
    with pytest.raises(InputError, match=expected):
        read_annotations(run)
    res = run_cli("review", run.path, "--set", f"{run.slices[1].id}=core")
    assert_one_line_error(res, "review", "annotations")
    assert_untouched(before, run.path)


def test_cli_set_and_clear(make_run):
    run = make_run()
    sid = run.slices[0].id
    res = run_cli("review", run.path, "--set", f"{sid}=spurious", "--note", "reads red")
    assert res.rc == 0 and f"{sid}: spurious" in res.out
    a = annotations_by_slice(run)[sid]
    assert (a.label, a.note) == ("spurious", "reads red")
    res = run_cli("review", run.path, "--clear", sid)
    assert res.rc == 0 and annotations_by_slice(run) == {}


@pytest.mark.parametrize(
    "argv, parts",
    [
        (["--set", "42/0=core"], ["no slice '42/0'"]),
        (["--set", "SLICE0=bogus"], ["bogus", "core"]),
        (["--set", "core"], ["SLICE=LABEL"]),
        (["--port", "70000"], ["port"]),
    ],
)
def test_cli_bad_input_is_one_line_and_writes_nothing(make_run, argv, parts):
    run = make_run()
    argv = [a.replace("SLICE0", run.slices[0].id) for a in argv]
    before = snapshot(run.path)
    res = run_cli("review", run.path, *argv)
    assert_one_line_error(res, "review", *parts)
    assert_untouched(before, run.path)
