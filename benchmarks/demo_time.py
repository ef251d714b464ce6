"""Wall time of ``failscope demo`` with its defaults, against the 3-minute budget.

Runs the real command in a subprocess, twice: *cold* (empty audited-model cache and
a new run directory: what a fresh clone does after ``make`` has installed the
package) and *warm* (same run directory and cache: the audited model and the
embeddings are reused). Prints each time and its ratio to the 180 s budget.

Usage::

    python benchmarks/demo_time.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUDGET_S = 180.0


def timed_demo(out: Path, cache: Path) -> float:
    env = {**os.environ, "FAILSCOPE_CACHE": str(cache)}
    cmd = [sys.executable, "-m", "failscope", "-q", "demo", "--out", str(out)]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out, cache = Path(tmp) / "run", Path(tmp) / "cache"
        cold = timed_demo(out, cache)
        warm = timed_demo(out, cache)
    print(f"cpu cores: {os.cpu_count()}\n")
    print("| failscope demo (defaults) | wall time (s) | share of the 180 s budget |")
    print("|---|---:|---:|")
    print(f"| cold: fresh cache, new run directory | {cold:.1f} | {cold / BUDGET_S:.2f} |")
    print(f"| warm: cached audited model and embeddings | {warm:.1f} | {warm / BUDGET_S:.2f} |")
    print(f"\ncold run {'within' if cold <= BUDGET_S else 'OVER'} the 3-minute budget")


if __name__ == "__main__":
    main()
