"""Progress for the CLI, on the log console (stderr): rich bars on a terminal, plain lines
elsewhere.

Without a terminal (a pipe, a file, CI) a bar would print nothing until it ends, so each
stage is logged as plain lines instead: one when it starts, one every
:data:`PLAIN_INTERVAL` seconds while it runs (with done/total when known), one when it
ends. Progress is hidden with ``-q`` (failscope's log level above INFO).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

logger = logging.getLogger("failscope.cli")

#: Seconds between progress lines when stderr is not a terminal.
PLAIN_INTERVAL = 10.0


def log_console() -> Any:
    """The console the log handler writes to (stderr), so progress and logs share it."""
    from rich.console import Console
    from rich.logging import RichHandler

    for h in logging.getLogger().handlers:
        if isinstance(h, RichHandler):
            return h.console
    return Console(stderr=True)


def _fmt_seconds(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


@dataclass
class _Track:
    """One stage being reported: its name, clock readings and counts (None: unknown)."""

    name: str
    started: float
    last: float = 0.0
    done: int | None = None
    total: int | None = None


class _PlainLines:
    """Stages as log lines at a steady interval; a daemon thread covers silent stretches.

    ``begin`` starts an outer stage of unknown length (it ends at the next ``begin``);
    ``update`` reports a counted stage, which may run inside it and ends when it is
    complete or another counted stage starts.
    """

    def __init__(self, interval: float, clock: Callable[[], float]) -> None:
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._outer: _Track | None = None
        self._inner: _Track | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._beat, name="failscope-progress", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            self._end_inner()
            self._end_outer()

    def _beat(self) -> None:
        while not self._stop.wait(self.interval / 4):
            with self._lock:
                track = self._inner or self._outer
                if track is not None and self._clock() - track.last >= self.interval:
                    self._line(track)

    def _line(self, t: _Track, *, final: bool = False) -> None:
        now = self._clock()
        elapsed = now - t.started
        if final:
            count = f"{t.done:,} " if t.done is not None else ""
            logger.info("%s: done %sin %s", t.name, count, _fmt_seconds(elapsed))
        elif t.total:
            done = t.done or 0
            text = f"{t.name}: {done:,}/{t.total:,} ({100 * done / t.total:.0f}%)"
            text += f", {_fmt_seconds(elapsed)}"
            if 0 < done < t.total:
                text += f", about {_fmt_seconds(elapsed * (t.total - done) / done)} left"
            logger.info("%s", text)
        else:
            logger.info("%s: running, %s", t.name, _fmt_seconds(elapsed))
        t.last = now

    def _end_inner(self) -> None:
        if self._inner is not None:
            self._line(self._inner, final=True)
        self._inner = None

    def _end_outer(self) -> None:
        if self._outer is not None:
            self._line(self._outer, final=True)
        self._outer = None

    def begin(self, name: str, *, announce: bool) -> None:
        with self._lock:
            self._end_inner()
            self._end_outer()
            now = self._clock()
            self._outer = _Track(name, started=now, last=now)
            if announce:
                logger.info("%s ...", name)

    def update(self, name: str, done: int, total: int) -> None:
        with self._lock:
            t = self._inner
            if t is None or t.name != name:
                self._end_inner()
                t = self._inner = _Track(name, started=self._clock(), done=done, total=total)
                self._line(t)
            else:
                t.done, t.total = done, total
                if self._clock() - t.last >= self.interval:
                    self._line(t)
            if total and done >= total:
                self._end_inner()


class StageBars:
    """Progress of a command's stages, on the log console.

    ``update(stage, done, total)`` is the ``progress`` callback the library takes;
    ``stage(name)`` starts a stage without a known length (it ends when the next one
    starts). On a terminal each stage is a rich bar; otherwise a log line every
    ``interval`` seconds (see the module docstring). Nothing is shown when
    failscope's log level is above INFO (``-q``), or with ``disable=True``.
    """

    LABELS: ClassVar[dict[str, str]] = {"predict": "predicting", "embed": "embedding"}

    def __init__(
        self,
        console: Any = None,
        *,
        disable: bool | None = None,
        interval: float = PLAIN_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        console = console or log_console()
        if disable is None:
            disable = logging.getLogger("failscope").getEffectiveLevel() > logging.INFO
        self._bars: Any = None
        self._lines: _PlainLines | None = None
        if disable:
            pass
        elif console.is_terminal:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bars = Progress(
                TextColumn("{task.description:<14}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                TimeElapsedColumn(),
                console=console,
            )
        else:
            self._lines = _PlainLines(interval, clock)
        self._tasks: dict[str, Any] = {}
        self._current: str | None = None

    def __enter__(self) -> StageBars:
        if self._bars is not None:
            self._bars.__enter__()
        if self._lines is not None:
            self._lines.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bars is not None:
            self._finish_current()
            self._bars.__exit__(*exc)
        if self._lines is not None:
            self._lines.close()

    def _finish_current(self) -> None:
        if self._current is not None:
            task = self._tasks[self._current]
            total = self._bars.tasks[task].total or 1
            self._bars.update(task, total=total, completed=total)

    def stage(self, name: str, *, announce: bool = True) -> None:
        """Start an indeterminate stage (it completes when the next one starts).

        Without a terminal its start is logged unless ``announce`` is False (for stages
        the library announces itself).
        """
        if self._lines is not None:
            self._lines.begin(name, announce=announce)
        if self._bars is None:
            return
        self._finish_current()
        self._tasks[name] = self._bars.add_task(name, total=None)
        self._current = name

    def update(self, stage: str, done: int, total: int) -> None:
        """Report ``done`` of ``total`` items of ``stage``."""
        label = self.LABELS.get(stage, stage)
        if self._lines is not None:
            self._lines.update(label, done, total)
        if self._bars is None:
            return
        if stage not in self._tasks:
            self._tasks[stage] = self._bars.add_task(label, total=total)
        self._bars.update(self._tasks[stage], completed=done, total=total)
