"""Progress: rich bars on a terminal, plain log lines at a steady interval elsewhere."""

from __future__ import annotations

import io
import logging
import time

from rich.console import Console

from failscope.cli._progress import StageBars


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _progress_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "failscope.cli"]


def test_without_a_terminal_progress_is_plain_lines_at_a_steady_interval(caplog):
    caplog.set_level(logging.INFO, logger="failscope")
    out = io.StringIO()
    clock = FakeClock()
    with StageBars(Console(file=out), interval=10.0, clock=clock) as bars:
        for done in range(0, 351, 10):  # 35 updates, one per second
            bars.update("embed", done, 350)
            clock.now += 1.0
        bars.stage("fit")
        clock.now += 3.0
    lines = _progress_lines(caplog)
    assert out.getvalue() == ""  # nothing drawn on the console itself: no bars
    embed = [ln for ln in lines if ln.startswith("embedding")]
    # the first update, then one line per 10 s (t = 10, 20, 30), then "done" at 350/350
    assert embed[0] == "embedding: 0/350 (0%), 0 s"
    assert embed[1] == "embedding: 100/350 (29%), 10 s, about 25 s left"
    assert len(embed) == 5 and embed[-1] == "embedding: done 350 in 35 s"
    assert lines[-2:] == ["fit ...", "fit: done in 3 s"]


def test_counted_stages_inside_an_outer_stage(caplog):
    caplog.set_level(logging.INFO, logger="failscope")
    clock = FakeClock()
    with StageBars(Console(file=io.StringIO()), interval=10.0, clock=clock) as bars:
        bars.stage("discover", announce=False)
        clock.now = 2.0
        bars.update("predict", 0, 10)
        clock.now = 5.0
        bars.update("predict", 10, 10)
        bars.update("embed", 10, 10)  # all cached
        clock.now = 9.0
    assert _progress_lines(caplog) == [
        "predicting: 0/10 (0%), 0 s",
        "predicting: done 10 in 3 s",
        "embedding: 10/10 (100%), 0 s",
        "embedding: done 10 in 0 s",
        "discover: done in 9 s",
    ]


def test_silent_stage_gets_a_line_every_interval(caplog):
    caplog.set_level(logging.INFO, logger="failscope")
    with StageBars(Console(file=io.StringIO()), interval=0.05) as bars:
        bars.stage("retraining")
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            if sum("running" in ln for ln in _progress_lines(caplog)) >= 2:
                break
            time.sleep(0.01)
    lines = _progress_lines(caplog)
    assert lines[0] == "retraining ..."
    assert sum(ln.startswith("retraining: running, ") for ln in lines) >= 2
    assert lines[-1].startswith("retraining: done in ")


def test_on_a_terminal_progress_is_bars_and_no_log_lines(caplog):
    caplog.set_level(logging.INFO, logger="failscope")
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=80)
    with StageBars(console) as bars:
        bars.update("predict", 5, 10)
        bars.update("predict", 10, 10)
    assert "predicting" in out.getvalue() and "━" in out.getvalue()
    assert _progress_lines(caplog) == []


def test_quiet_hides_progress(caplog):
    caplog.set_level(logging.WARNING, logger="failscope")
    out = io.StringIO()
    with StageBars(Console(file=out, force_terminal=True)) as bars:
        bars.update("embed", 1, 2)
        bars.stage("fit")
    assert out.getvalue() == "" and _progress_lines(caplog) == []
