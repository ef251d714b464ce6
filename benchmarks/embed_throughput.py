"""Embedding throughput of ``failscope discover``: images per second, by decoding workers.

Builds the built-in world once (``failscope demo`` without captions, retraining and
report), then runs the real ``failscope discover`` command in a subprocess on its
manifest (or ``--limit`` images drawn from it at random) with each ``--num-workers`` value and an
empty embedding cache, and once more with the last cache filled (the resumable
cache: nothing is recomputed). Throughput is rows / ``run.json["timings"]["embed"]``.

The default CLIP is open_clip's ViT-B-32 with **random** weights (no weights can be
downloaded here, and speed does not depend on them); pass ``--clip world`` for the
world's small CLIP. Meant for a GPU machine (fp16 on CUDA by default); on a CPU use
a small ``--limit``.

Usage::

    python benchmarks/embed_throughput.py                          # ViT-B-32, workers 0 and 8
    python benchmarks/embed_throughput.py --limit 2000 --workers 0 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from caption_accuracy import build_world_run


def world_run(workdir: Path) -> tuple[Path, Path]:
    """The default world's manifest and audited model (built once under ``workdir``,
    cached by world key: see ``caption_accuracy.build_world_run``)."""
    run, _ = build_world_run((), seed=0, workdir=workdir)
    cfg = run.info["config"]
    return Path(cfg["data"]), Path(cfg["model"])


def discover(args: argparse.Namespace, manifest: Path, model: Path, out: Path, workers: int,
             cache: Path) -> dict:  # fmt: skip
    """Run ``failscope discover`` once; return its run.json."""
    clip = ["--clip", args.clip] + (["--clip-random-init"] if args.clip != "world" else [])
    cmd = [
        sys.executable, "-m", "failscope", "-q", "discover", "--data", str(manifest),
        "--model", str(model), *clip, "--num-workers", str(workers),
        "--batch-size", str(args.batch_size), "--cache-dir", str(cache),
        "--no-captions", "--no-report", "--out", str(out),
    ]  # fmt: skip
    if args.device:
        cmd += ["--device", args.device]
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode:
        raise SystemExit(f"failscope discover failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads((out / "run.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", default="ViT-B-32", help="open_clip model name, or 'world'")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 8])
    parser.add_argument("--limit", type=int, help="embed only N images, drawn at random")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default=None)
    parser.add_argument("--workdir", type=Path, default=None, help="keep the world here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        manifest, model = world_run(workdir)
        if args.limit:
            import pandas as pd

            table = pd.read_parquet(manifest)
            table = table.sample(n=min(args.limit, len(table)), random_state=0).sort_index()
            table["path"] = [str((manifest.parent / p).resolve()) for p in table["path"]]
            manifest = Path(tmp) / "manifest.parquet"
            table.to_parquet(manifest)
        rows = []
        for w in args.workers:
            cache = Path(tmp) / f"cache-{w}"
            t0 = time.perf_counter()
            info = discover(args, manifest, model, Path(tmp) / f"run-{w}", w, cache)
            rows.append((f"{w} workers, empty cache", info, time.perf_counter() - t0))
        w = args.workers[-1]
        t0 = time.perf_counter()
        info = discover(args, manifest, model, Path(tmp) / f"run-{w}", w, Path(tmp) / f"cache-{w}")
        rows.append((f"{w} workers, cache filled", info, time.perf_counter() - t0))

    clip = rows[0][1]["embeddings"]["clip"]
    print(f"cpu cores: {os.cpu_count()}; CLIP {args.clip} ({clip['precision']}), "
          f"batch {args.batch_size}\n")  # fmt: skip
    print("| run | images | embed stage (s) | images/s | whole command (s) |")
    print("|---|---:|---:|---:|---:|")
    for name, info, wall in rows:
        n = int(info["n_examples"])
        t = float(info["timings"]["embed"])
        rate = f"{n / t:,.0f}" if t > 0 else "n/a"
        print(f"| {name} | {n:,} | {t:.1f} | {rate} | {wall:.1f} |")


if __name__ == "__main__":
    main()
