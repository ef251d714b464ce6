"""The ``failscope`` entry point: log options anywhere, one-line failures, exit codes."""

from __future__ import annotations

import errno
import logging

import pytest

from failscope.cli import TRACEBACK_ENV, build_parser, os_error_line
from tests.bad_inputs.harness import assert_one_line_error, run_cli


@pytest.mark.parametrize(
    ("argv", "verbose", "quiet"),
    [
        (["check", "R", "-q"], 0, True),
        (["-q", "check", "R"], 0, True),
        (["check", "-v", "R"], 1, False),
        (["check", "R", "-vv"], 2, False),
        (["-v", "check", "R"], 1, False),
        (["discover", "-q", "--data", "d", "--predictions", "p", "--out", "o"], 0, True),
    ],
)
def test_log_options_before_or_after_the_subcommand(argv, verbose, quiet):
    args = build_parser().parse_args(argv)
    assert (args.verbose, args.quiet) == (verbose, quiet)


def test_quiet_after_the_subcommand_takes_effect(synthetic_run, monkeypatch):
    run = synthetic_run()
    monkeypatch.setattr(logging.getLogger("failscope"), "level", logging.NOTSET)
    res = run_cli("check", run, "--max-error-rate", "1", "-q")
    assert res.rc == 0, res.err
    assert logging.getLogger("failscope").level == logging.WARNING


def _boom(args):
    raise RuntimeError("boom\nsecond line")


def test_internal_failure_is_one_line_without_traceback(monkeypatch):
    monkeypatch.delenv(TRACEBACK_ENV, raising=False)
    monkeypatch.setattr("failscope.cli.evaluate.run", _boom)
    res = run_cli("evaluate", "RUN")
    assert res.rc == 1 and "Traceback" not in res.err
    lines = res.err.strip().splitlines()
    assert len(lines) == 1, res.err
    assert lines[0].startswith("failscope evaluate: internal error")
    assert "RuntimeError: boom second line" in lines[0]
    assert "-v" in lines[0] and TRACEBACK_ENV in lines[0]


@pytest.mark.parametrize("how", ["-v", "env"])
def test_internal_failure_traceback_on_request(monkeypatch, how):
    monkeypatch.setattr("failscope.cli.evaluate.run", _boom)
    if how == "env":
        monkeypatch.setenv(TRACEBACK_ENV, "1")
    res = run_cli(*(["-v"] if how == "-v" else []), "evaluate", "RUN")
    assert res.rc == 1
    assert "Traceback" in res.err and "RuntimeError: boom" in res.err


def test_os_error_line_names_the_path_and_what_to_do():
    line = os_error_line(PermissionError(errno.EACCES, "Permission denied", "/r/x.json"))
    assert line.startswith("Permission denied: /r/x.json (") and "permissions" in line
    full = os_error_line(OSError(errno.ENOSPC, "No space left on device"), context="runs/a")
    assert full == "No space left on device: runs/a (free some space and re-run)"
    assert os_error_line(OSError("odd"), context=None) == "odd"


def test_stage_os_error_is_one_line(monkeypatch, synthetic_run):
    run = synthetic_run()

    def full(args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("failscope.cli.report.run", full)
    res = run_cli("report", run)
    line = assert_one_line_error(res, "report", "No space left on device", str(run))
    assert line.endswith(f"(free some space and re-run); the earlier run in {run} is intact")

    def denied(args):
        raise PermissionError(errno.EACCES, "Permission denied", str(run / "report.html"))

    monkeypatch.setattr("failscope.cli.report.run", denied)
    line = assert_one_line_error(run_cli("report", run), "report", "Permission denied")
    assert f"{run / 'report.html'} (not writable" in line
