"""Whole-run writes: old or new after a kill, one writer at a time, only our files deleted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from runbuilder import build_run, planted_world

from failscope import InputError, load_run
from failscope.run import _journal

TESTS = Path(__file__).resolve().parents[1]


def _build(path: Path, seed: int, **settings):
    w = planted_world(seed=seed)
    return build_run(
        path, class_names=["ant", "bee", "cat"],
        **{k: w[k] for k in ("embeddings", "labels", "predictions", "splits")}, **settings,
    )  # fmt: skip


def _fingerprint(path: Path) -> tuple:
    run = load_run(path)
    ex = run.examples
    return (
        run.info.created, tuple(s.size for s in run.slices),
        tuple(np.round(ex["failure_score"].to_numpy(), 6)), len(ex),
    )  # fmt: skip


def test_non_empty_folder_without_a_run_is_refused_unless_force(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match=r"not empty and holds no failscope run.*--force"):
        _build(out, 0)
    assert sorted(os.listdir(out)) == ["notes.txt"]
    _build(out, 0, force=True)
    assert (out / "notes.txt").read_text() == "keep me"
    assert "notes.txt" not in load_run(out).info.files


def test_replacing_a_run_deletes_only_its_own_files(tmp_path):
    out = tmp_path / "run"
    run = _build(out, 0)
    (out / "plots").mkdir()
    (out / "plots" / "my_figure.png").write_bytes(b"user")
    (out / "evaluation.json").write_text("{}")
    run.add_files("evaluation.json")  # as `failscope evaluate` does
    _build(out, 1)
    assert (out / "plots" / "my_figure.png").read_bytes() == b"user"
    assert not (out / "evaluation.json").exists()  # the old run's, describing the old run
    assert not (out / _journal.STAGING_DIR).exists()


def test_out_that_is_a_file_or_inside_an_image_folder_is_refused(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(InputError, match="is an existing file"):
        _build(f, 0)
    from failscope.run.writer import check_output_dir

    with pytest.raises(InputError, match="inside the image folder"):
        check_output_dir(tmp_path / "tree" / "runs" / "a", data_root=tmp_path / "tree", force=False)


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from runbuilder import build_run, planted_world
    import failscope.run._journal as journal

    target, out = int(sys.argv[1]), Path(sys.argv[2])
    staging = out / journal.STAGING_DIR
    real, count = os.replace, [0]

    def replace(src, dst):
        dst = Path(dst)
        is_journal = dst == staging / journal.JOURNAL
        is_move = dst.parent == out or out in dst.parents and staging not in dst.parents
        staged = staging in Path(src).parents
        if (target < 0 and is_journal) or (target >= 0 and is_move and staged):
            if target < 0 or count[0] == target:
                os.kill(os.getpid(), signal.SIGKILL)
            count[0] += 1
        return real(src, dst)

    os.replace = replace
    w = planted_world(seed=1)
    build_run(out, class_names=["ant", "bee", "cat"],
              **{{k: w[k] for k in ("embeddings", "labels", "predictions", "splits")}})
    """
).format(tests=str(TESTS))


@pytest.mark.parametrize("kill_at", [-1, 0, 3, 6])
def test_a_kill_during_the_swap_leaves_the_old_or_the_new_run(tmp_path, kill_at):
    out = tmp_path / "run"
    _build(out, 0)
    old = _fingerprint(out)
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, str(script), str(kill_at), str(out)], env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    after = _fingerprint(out)  # load_run completes or discards the interrupted swap
    _build(tmp_path / "fresh", 1)
    new = _fingerprint(tmp_path / "fresh")
    if kill_at < 0:
        assert after == old  # killed before the journal: the old run, untouched
    else:
        assert after[1:] == new[1:] and after != old  # after it: the new run, whole
    assert not (out / _journal.STAGING_DIR).exists()
    assert not list(out.rglob("*.fstmp*"))


def test_a_second_writer_is_refused_naming_the_holder(tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from failscope.run import run_lock
            with run_lock({str(out)!r}):
                print("locked", flush=True)
                time.sleep(60)
        """)],
        stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(InputError, match=rf"another failscope process \(pid {holder.pid}\)"):
            _build(out, 0)
    finally:
        holder.kill()
        holder.wait()
    _build(out, 0)  # the lock died with its holder
    assert load_run(out).slices


def test_the_lock_is_reentrant_in_one_process(tmp_path):
    with _journal.run_lock(tmp_path), _journal.run_lock(tmp_path):
        pass
    with _journal.run_lock(tmp_path):
        pass


def test_stale_temporaries_are_removed_by_the_next_run(tmp_path):
    out = tmp_path / "run"
    _build(out, 0)
    (out / ".examples.abc.fstmp.parquet").write_bytes(b"half")
    _build(out, 1)
    assert not list(out.rglob("*.fstmp*"))
