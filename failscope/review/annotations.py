"""``RUN/annotations.json``: a person's verdict on each slice, read and written safely.

The file (:class:`~failscope.run.schema.Annotations`) holds the run's ``run_id``, a
``version`` that every save bumps, and at most one
:class:`~failscope.run.schema.Annotation` per slice. It may be written by hand, from
Python (:func:`annotate`) or by ``failscope review``; every writer here holds the run's
lock (one process at a time) and a lock per run within the process (threads of the
review server), reads the latest file, applies one change and writes it atomically.

Compare-and-swap: a save may say which ``version`` it was based on. If the file has
moved on since, the save is refused (:class:`VersionConflict`) unless the caller
also passes the slice's annotation as it saw it (``expect``) and that slice has not
changed: then only other slices changed, and the save lands on the latest file. So
two tabs saving different slices both land, and a stale edit of the same slice is
refused instead of silently overwriting the newer one.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import Any

from failscope._validation import InputError, check_choice, fail
from failscope.run import ANNOTATIONS_JSON, FORMAT_VERSION, Run, load_run, run_lock, write_json
from failscope.run.schema import ANNOTATION_LABELS, Annotation, Annotations

logger = logging.getLogger(__name__)

__all__ = [
    "MAX_NOTE_CHARS",
    "VersionConflict",
    "annotate",
    "annotations_by_slice",
    "check_annotations",
    "read_annotations",
    "remove_annotation",
    "save_annotation",
]

#: Longest note kept with an annotation (characters).
MAX_NOTE_CHARS = 2000
#: Seconds a save waits for another process that is writing the run.
LOCK_TIMEOUT = 10.0

_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


class VersionConflict(InputError):
    """A save based on an older version of the file, for a slice that changed since.

    ``current`` is the file as it is now.
    """

    def __init__(self, message: str, current: Annotations) -> None:
        super().__init__(message)
        self.current = current


def _thread_lock(run: Run) -> threading.Lock:
    key = str(run.path.resolve())
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(key, threading.Lock())


@contextmanager
def _run_lock(run: Run, *, timeout: float) -> Iterator[None]:
    """The run's lock, waiting up to ``timeout`` seconds for another process's write."""
    deadline = time.monotonic() + timeout
    stack = ExitStack()
    while True:
        try:
            stack.enter_context(run_lock(run.path))
            break
        except InputError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    with stack:
        yield


def _as_run(run: Run | str | os.PathLike[str]) -> Run:
    return run if isinstance(run, Run) else load_run(run)


def check_annotations(run: Run, ann: Annotations, *, where: str) -> Annotations:
    """Refuse an annotation file that names an unknown slice or one slice twice."""
    known = {s.id for s in run.slices}
    seen: set[str] = set()
    for a in ann.annotations:
        if a.slice_id not in known:
            shown = ", ".join(sorted(known)[:8]) or "none"
            raise fail(
                f"{where}: slice {a.slice_id!r} is not a slice of {run.path} (slices: "
                f"{shown}); fix or remove that annotation"
            )
        if a.slice_id in seen:
            raise fail(f"{where}: slice {a.slice_id!r} is annotated twice; keep one entry")
        seen.add(a.slice_id)
    return ann


def read_annotations(
    run: Run | str | os.PathLike[str], path: str | os.PathLike[str] | None = None
) -> Annotations:
    """The run's annotations (``RUN/annotations.json``, or ``path``), checked.

    Returns an empty file at version 0 when there is none yet.

    Raises
    ------
    InputError
        The file is malformed, of another format or run, or names an unknown slice.
    """
    run = _as_run(run)
    if path is not None:
        return check_annotations(run, run.read_annotations(path), where=str(path))
    ann = run.annotations
    if ann is None:
        return Annotations(format=FORMAT_VERSION, run_id=run.info.run_id, version=0, annotations=())
    return check_annotations(run, ann, where=str(run.path / ANNOTATIONS_JSON))


def annotations_by_slice(run: Run | str | os.PathLike[str]) -> dict[str, Annotation]:
    """Slice id -> its annotation (slices without one are absent); for the report."""
    return {a.slice_id: a for a in read_annotations(run).annotations}


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _check_note(note: Any) -> str | None:
    if note is None:
        return None
    if not isinstance(note, str):
        raise fail(f"note must be text, got {type(note).__name__}")
    note = note.strip()
    if len(note) > MAX_NOTE_CHARS:
        raise fail(f"note has {len(note)} characters; keep it under {MAX_NOTE_CHARS}")
    return note or None


def _write(run: Run, ann: Annotations) -> None:
    path = run.path / ANNOTATIONS_JSON
    if path.exists() and not run.owns(ANNOTATIONS_JSON):
        # written by hand: replaced only because it parsed as this run's annotations
        # (read_annotations ran first), and every entry of it is kept
        logger.info("taking over the hand-written %s", path)
    else:
        path = run.output(ANNOTATIONS_JSON)
    write_json(path, ann.to_json())
    run.add_files(ANNOTATIONS_JSON)


def _same(a: Annotation | None, b: Mapping[str, Any] | None) -> bool:
    """Whether annotation ``a`` is the one a client saw (``b``: its JSON, or None)."""
    if a is None or b is None:
        return a is None and b is None
    return (a.label, a.note, a.updated) == (b.get("label"), b.get("note"), b.get("updated"))


def save_annotation(
    run: Run | str | os.PathLike[str],
    slice_id: str,
    label: str | None,
    *,
    note: str | None = None,
    by: str | None = None,
    version: int | None = None,
    expect: Mapping[str, Any] | bool | None = False,
) -> Annotations:
    """Set (``label``) or clear (``label=None``) one slice's annotation; return the new file.

    Parameters
    ----------
    run : Run or path
    slice_id : str
        A slice of the run, e.g. ``"8/0"``.
    label : {"core", "spurious", "noisy", "not-a-failure"} or None
        None removes the slice's annotation.
    note : str, optional
        Free text kept with it (at most :data:`MAX_NOTE_CHARS` characters).
    by : str, optional
        Who annotated.
    version : int, optional
        The file version this change is based on (compare-and-swap).
    expect : dict or None, optional
        The slice's annotation as the caller saw it (its JSON, or None for "none");
        with ``version``, a save on an older version still lands when that slice is
        unchanged. Not given (False): any version change is a conflict.

    Raises
    ------
    InputError
        Unknown slice or label, a bad note, or another process is writing the run.
    VersionConflict
        The save is stale (see the module docstring); ``exc.current`` is the latest file.
    """
    run = _as_run(run)
    run.slice(str(slice_id))  # unknown slice: one line listing the known ones
    if label is not None:
        check_choice(label, ANNOTATION_LABELS, name="label")
    note = _check_note(note)
    with _thread_lock(run), _run_lock(run, timeout=LOCK_TIMEOUT):
        run.__dict__.pop("info", None)  # another process may have changed run.json
        current = read_annotations(run)
        entries = {a.slice_id: a for a in current.annotations}
        mine = entries.get(slice_id)
        if version is not None and version != current.version:
            if expect is False or not _same(mine, expect):  # type: ignore[arg-type]
                raise VersionConflict(
                    f"annotations.json is at version {current.version}, this save was based "
                    f"on version {version} and slice {slice_id} changed since; reload and "
                    "choose again",
                    current,
                )
        if label is None:
            entries.pop(slice_id, None)
        else:
            entries[slice_id] = Annotation(
                slice_id=slice_id, label=label, note=note, updated=_now(), by=by
            )  # type: ignore[arg-type]
        order = {s.id: i for i, s in enumerate(run.slices)}
        new = current.replace(
            version=current.version + 1,
            annotations=tuple(sorted(entries.values(), key=lambda a: order[a.slice_id])),
        )
        _write(run, new)
    logger.info("slice %s: %s (annotations version %d)", slice_id, label, new.version)
    return new


def annotate(
    run: Run | str | os.PathLike[str],
    slice_id: str,
    label: str,
    *,
    note: str | None = None,
    by: str | None = None,
    version: int | None = None,
) -> Annotations:
    """Record a person's verdict on one slice in ``RUN/annotations.json``.

    The same file ``failscope review`` writes; use it from notebooks or CI.

    Parameters
    ----------
    run : Run or path
    slice_id : str
        E.g. ``"8/0"`` (``failscope.load_run(RUN).slices`` lists them).
    label : {"core", "spurious", "noisy", "not-a-failure"}
        ``core``: a real but under-served subgroup; ``spurious``: the model predicts
        from the wrong cue; ``noisy``: the labels are wrong; ``not-a-failure``.
    note : str, optional
    by : str, optional
    version : int, optional
        Refuse the save (:class:`VersionConflict`) unless the file is at this version.

    Returns
    -------
    Annotations
        The file as written.
    """
    if label is None:
        raise fail(f"label must be one of {', '.join(ANNOTATION_LABELS)}; to clear one use "
                   "failscope.review.remove_annotation")  # fmt: skip
    return save_annotation(run, slice_id, label, note=note, by=by, version=version)


def remove_annotation(
    run: Run | str | os.PathLike[str], slice_id: str, *, version: int | None = None
) -> Annotations:
    """Remove one slice's annotation (a no-op if it has none); return the file."""
    return save_annotation(run, slice_id, None, version=version)
