"""The bad-input harness: run the CLI in-process and check how it fails.

Every bad-input case asserts the same four things: the exit code, a single line on
stderr that starts with ``failscope COMMAND: error:`` and names the bad file, column
or value, no traceback anywhere, and no file outside the run's own touched.
"""

from __future__ import annotations

import hashlib
import io
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class CliResult:
    """Exit code and captured output of one in-process CLI call."""

    rc: int
    out: str
    err: str


def run_cli(*argv: object) -> CliResult:
    """Call ``failscope ARGV`` in this process (``failscope.cli.main``), capturing output."""
    from failscope.cli import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse errors
            rc = int(exc.code or 0)
    return CliResult(rc, out.getvalue(), err.getvalue())


def assert_one_line_error(res: CliResult, command: str, *parts: str, rc: int = 2) -> str:
    """Assert a one-line error for ``command`` that mentions every one of ``parts``."""
    assert "Traceback" not in res.out + res.err, res.err
    assert res.rc == rc, (res.rc, res.out, res.err)
    lines = [ln for ln in res.err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, res.err
    line = lines[0]
    assert line.startswith(f"failscope {command}: error: "), line
    for part in parts:
        assert str(part) in line, (part, line)
    return line


def snapshot(root: Path, *, exclude: tuple[Path, ...] = ()) -> dict[str, str]:
    """sha256 of every file under ``root`` (relative path -> digest), skipping ``exclude``."""
    root = Path(root)
    skip = tuple(Path(p).resolve() for p in exclude)
    out = {}
    for p in sorted(root.rglob("*")):
        rp = p.resolve()
        if p.is_file() and not any(rp == s or s in rp.parents for s in skip):
            out[p.relative_to(root).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def assert_untouched(before: dict[str, str], root: Path, *, exclude: tuple[Path, ...] = ()) -> None:
    """Assert that no file under ``root`` (outside ``exclude``) was added, changed or removed."""
    after = snapshot(root, exclude=exclude)
    assert after == before, {
        "added": sorted(set(after) - set(before)),
        "removed": sorted(set(before) - set(after)),
        "changed": sorted(k for k in before.keys() & after.keys() if before[k] != after[k]),
    }


def small_discover_args(dataset_writer, tmp_path):
    """A discover run from predictions + embeddings (no model, no CLIP): fast."""
    rows = dataset_writer(tmp_path / "data", n_per_class=12, size=8)
    labels = np.array([["ant", "bee", "cat"].index(r["label"]) for r in rows])
    planted = np.array([r["planted"] for r in rows])
    pd.DataFrame({"pred": np.where(planted, (labels + 1) % 3, labels)}).to_csv(
        tmp_path / "preds.csv", index=False
    )
    emb = np.random.default_rng(0).normal(size=(len(rows), 4)).astype(np.float32)
    emb[:, 1] += 4.0 * planted
    np.save(tmp_path / "emb.npy", emb)
    return [
        "--data", tmp_path / "data" / "manifest.csv", "--predictions", tmp_path / "preds.csv",
        "--embeddings", tmp_path / "emb.npy", "--no-report", "--min-examples", "4",
    ]  # fmt: skip
