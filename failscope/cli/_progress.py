"""Progress bars for the CLI: one rich bar per long stage."""

from __future__ import annotations

import logging
from typing import Any, ClassVar


def log_console() -> Any:
    """The console the log handler writes to, so progress bars and logs share it."""
    from rich.console import Console
    from rich.logging import RichHandler

    for h in logging.getLogger().handlers:
        if isinstance(h, RichHandler):
            return h.console
    return Console(stderr=True)


class StageBars:
    """A rich ``Progress`` with one bar per stage.

    ``update(stage, done, total)`` is the ``progress`` callback the library takes;
    ``stage(name)`` marks the start of a stage without a known length. The bars are
    hidden (``disable=None``) when failscope's log level is above INFO, as with ``-q``.
    """

    LABELS: ClassVar[dict[str, str]] = {"predict": "predicting", "embed": "embedding"}

    def __init__(self, console: Any = None, *, disable: bool | None = None) -> None:
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
            console=console or log_console(),
            disable=(
                logging.getLogger("failscope").getEffectiveLevel() > logging.INFO
                if disable is None
                else disable
            ),
        )
        self._tasks: dict[str, Any] = {}
        self._current: str | None = None

    def __enter__(self) -> StageBars:
        self._bars.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._finish_current()
        self._bars.__exit__(*exc)

    def _finish_current(self) -> None:
        if self._current is not None:
            task = self._tasks[self._current]
            total = self._bars.tasks[task].total or 1
            self._bars.update(task, total=total, completed=total)

    def stage(self, name: str) -> None:
        """Start an indeterminate stage (its bar completes when the next one starts)."""
        self._finish_current()
        self._tasks[name] = self._bars.add_task(name, total=None)
        self._current = name

    def update(self, stage: str, done: int, total: int) -> None:
        """Report ``done`` of ``total`` items of ``stage``."""
        if stage not in self._tasks:
            self._tasks[stage] = self._bars.add_task(self.LABELS.get(stage, stage), total=total)
        self._bars.update(self._tasks[stage], completed=done, total=total)
