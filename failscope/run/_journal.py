"""Whole-run writes: a lock per run directory and a journalled swap of a run's files.

``discover`` writes a new run into ``RUN/.failscope-staging/``, then writes the list
of files to move (``COMMIT.json``, atomically) and moves them into place. A
process killed before ``COMMIT.json`` exists leaves the old run untouched (the
staging folder is discarded next time); one killed after it leaves a journal that
the next reader or writer completes. Either way, the run read afterwards is the
old one or the new one, never a mix.

Only one process writes a run at a time: :func:`run_lock` holds an exclusive
``flock`` on ``RUN/.failscope.lock`` (a second writer gets a one-line error naming
the process holding it). The lock is re-entrant within a process.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from failscope._validation import fail
from failscope.run._io import TMP_SUFFIX, write_json

logger = logging.getLogger(__name__)

__all__ = ["LOCK_FILE", "STAGING_DIR", "commit", "recover", "remove_stale_temporaries", "run_lock"]

STAGING_DIR = ".failscope-staging"
LOCK_FILE = ".failscope.lock"
JOURNAL = "COMMIT.json"

_HELD: dict[str, int] = {}  # resolved run path -> depth of re-entrant holds in this process


@contextmanager
def run_lock(run_dir: str | os.PathLike[str]) -> Iterator[None]:
    """Hold the run directory's write lock (created if needed) for the block."""
    run_dir = Path(run_dir)
    key = str(run_dir.resolve())
    if _HELD.get(key):
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_dir / LOCK_FILE
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise fail(
                f"another failscope process (pid {holder}) is writing {run_dir}; wait for it "
                "to finish, or stop it, then run again"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _HELD[key] = 1
        try:
            yield
        finally:
            _HELD.pop(key, None)
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def remove_stale_temporaries(run_dir: Path) -> int:
    """Delete temporary files (``.*.fstmp.*``) a killed process left; return how many."""
    n = 0
    for p in run_dir.rglob(f".*{TMP_SUFFIX}*"):
        if p.is_file() and STAGING_DIR not in p.parts:
            p.unlink(missing_ok=True)
            n += 1
    if n:
        logger.info("removed %d stale temporary files from %s", n, run_dir)
    return n


def recover(run_dir: str | os.PathLike[str]) -> None:
    """Complete an interrupted swap (journal present) or discard an unfinished staging."""
    staging = Path(run_dir) / STAGING_DIR
    if not staging.is_dir():
        return
    journal = staging / JOURNAL
    if journal.is_file():
        plan = json.loads(journal.read_text(encoding="utf-8"))
        _apply(Path(run_dir), staging, plan["moves"], plan["delete"])
        logger.warning("completed the interrupted write of the run in %s", run_dir)
    shutil.rmtree(staging)


def _apply(run_dir: Path, staging: Path, moves: list[str], delete: list[str]) -> None:
    for name in moves:
        src = staging / name
        if src.exists():  # else moved before the interruption
            (run_dir / name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, run_dir / name)
    for name in delete:
        (run_dir / name).unlink(missing_ok=True)
        _prune_empty_parents(run_dir, Path(name))


def _prune_empty_parents(run_dir: Path, rel: Path) -> None:
    for parent in rel.parents:
        if parent == Path("."):
            return
        try:
            (run_dir / parent).rmdir()  # only if empty
        except OSError:
            return


def commit(run_dir: Path, staged: Iterable[str], *, delete: Iterable[str]) -> None:
    """Move ``staged`` files (relative names, ``run.json`` last) from the staging folder into
    ``run_dir``, then delete ``delete`` (files of the old run that the new one does not have)."""
    staging = run_dir / STAGING_DIR
    moves = sorted(staged, key=lambda n: (n == "run.json", n))
    drop = sorted(set(delete) - set(moves))
    write_json(staging / JOURNAL, {"moves": moves, "delete": drop})
    _apply(run_dir, staging, moves, drop)
    shutil.rmtree(staging)
