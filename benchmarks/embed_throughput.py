"""Embedding throughput of ``failscope discover``: images per second, by engine and workers.

Builds the built-in world once (``failscope demo`` without captions, retraining and
report), then runs the real ``failscope discover`` command in a subprocess on its
manifest (or ``--limit`` images drawn from it at random) with each ``--num-workers`` value and an
empty embedding cache, and once more with the last cache filled (the resumable
cache: nothing is recomputed). Throughput is rows / ``run.json["timings"]["embed"]``.

With ``--engine ray`` the same command also runs with ``--engine ray`` (a local Ray
instance started by the command, ``--ray-actors`` actors), side by side with the local
engine, and the table compares both **passes** (the audited model's predictions plus
CLIP's embeddings, which Ray runs in one pipeline): rows / (``predict`` + ``embed`` +
``ray`` stage times). Ray's overhead is split into its start (``ray.init``), the
first batch (actors start and load the models) and the steady rate after it; the
script prints the dataset size at which Ray reaches the local engine's throughput
(and 80% of it) from those measurements.

The default CLIP is open_clip's ViT-B-32 with **random** weights (no weights can be
downloaded here, and speed does not depend on them); pass ``--clip world`` for the
world's small CLIP. Meant for a GPU machine (fp16 on CUDA by default); on a CPU use
a small ``--limit``. ``--local-threads 0 1`` also runs the local engine with one torch
thread (``OMP_NUM_THREADS=1``, as Ray gives each actor): on a machine busy with other
jobs, torch's default threads spin and slow the local engine several times over.

Usage::

    python benchmarks/embed_throughput.py                          # ViT-B-32, workers 0 and 8
    python benchmarks/embed_throughput.py --limit 2000 --workers 0 2
    python benchmarks/embed_throughput.py --clip world --workers 0 --engine ray  # 2 cores
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from caption_accuracy import build_world_run


def world_run(workdir: Path) -> tuple[Path, Path]:
    """The default world's manifest and audited model (built once under ``workdir``,
    cached by world key: see ``caption_accuracy.build_world_run``)."""
    run, _ = build_world_run((), seed=0, workdir=workdir)
    return Path(run.config.data), Path(run.config.model)


def discover(args: argparse.Namespace, manifest: Path, model: Path, out: Path, workers: int,
             cache: Path, engine: tuple[str, ...] = (), threads: int = 0) -> Any:  # fmt: skip
    """Run ``failscope discover`` once; return its ``run.json`` (a typed ``RunInfo``).

    ``engine``: extra engine options; ``threads``: OMP_NUM_THREADS (0: torch's default).
    """
    clip = ["--clip", args.clip] + (["--clip-random-init"] if args.clip != "world" else [])
    cmd = [
        sys.executable, "-m", "failscope", "-q", "discover", "--data", str(manifest),
        "--model", str(model), *clip, "--num-workers", str(workers),
        "--batch-size", str(args.batch_size), "--cache-dir", str(cache),
        "--no-captions", "--no-report", "--out", str(out), *engine,
    ]  # fmt: skip
    if args.device:
        cmd += ["--device", args.device]
    # a local Ray instance on the loopback address only
    env = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          env=env)  # fmt: skip
    if proc.returncode:
        raise SystemExit(f"failscope discover failed ({proc.returncode}): {proc.stderr[-2000:]}")
    from failscope import load_run

    return load_run(out).info


def passes_seconds(info: Any) -> float:
    """Time of the prediction and embedding passes (with Ray: its stage plus the re-reads)."""
    t = info.timings
    return float(t["predict"]) + float(t["embed"]) + float(t.get("ray", 0.0))


def _secs(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def steady_rate(eng: dict) -> float | None:
    """Ray's images/s after its first batch (actors started, models loaded)."""
    t = float(eng["pipeline_seconds"]) - float(eng["first_batch_seconds"] or 0)
    rows = eng["embedded"] + eng["dropped"] - eng["first_batch_rows"]
    return rows / t if eng.get("rows_missing") and t > 0 else None


def print_engines(rows: list[tuple[str, Any, float]]) -> None:
    """Local vs Ray, side by side: both passes, Ray's start, first batch and steady rate."""
    print("| engine | images | Ray start (s) | first batch (s) | both passes (s) | images/s "
          "| images/s after the first batch | whole command (s) |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    local_rate = None
    for name, info, wall in rows:
        n, t = info.n_examples, passes_seconds(info)
        eng = info.engine or {}
        steady = steady_rate(eng) if eng else None
        if not eng and "cache filled" not in name:  # compare with the best local run
            local_rate = max(local_rate or 0.0, n / t)
        print(f"| {name} | {n:,} | {_secs(eng.get('startup_seconds'))} "
              f"| {_secs(eng.get('first_batch_seconds'))} | {t:.1f} | {n / t:,.0f} "
              f"| {'-' if steady is None else f'{steady:,.0f}'} | {wall:.1f} |")  # fmt: skip
    for name, info, _ in rows:
        eng = info.engine or {}
        r_ray = steady_rate(eng) if eng else None
        if r_ray is None or local_rate is None:
            continue
        n = info.n_examples
        rate = n / passes_seconds(info)
        over = passes_seconds(info) - n / r_ray  # start, first batch, and the rest outside
        print(f"\n{name}: {rate / local_rate:.0%} of the best local run's throughput at {n:,} "
              f"images; fixed overhead {over:.1f} s; after the first batch {r_ray:,.0f} "
              f"images/s ({r_ray / local_rate:.0%} of local)")  # fmt: skip
        for share in (1.0, 0.8):
            gap = 1 / (share * local_rate) - 1 / r_ray
            at = f"{over / gap:,.0f} images" if gap > 0 else "never (steady rate too low)"
            print(f"  reaches {share:.0%} of local at: {at}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", default="ViT-B-32", help="open_clip model name, or 'world'")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 8])
    parser.add_argument("--limit", type=int, help="embed only N images, drawn at random")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default=None)
    parser.add_argument("--workdir", type=Path, default=None, help="keep the world here")
    parser.add_argument("--engine", choices=("local", "ray"), default="local",
                        help="ray: also run --engine ray, side by side with local")  # fmt: skip
    parser.add_argument("--ray-actors", type=int, nargs="+", default=[1])
    parser.add_argument("--ray-gpus-per-actor", type=float, default=0.0)
    parser.add_argument("--local-threads", type=int, nargs="+", default=[0],
                        help="OMP_NUM_THREADS of the local runs (0: torch's default)")  # fmt: skip
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
            for th in args.local_threads:
                cache = Path(tmp) / f"cache-{w}"
                shutil.rmtree(cache, ignore_errors=True)
                t0 = time.perf_counter()
                info = discover(args, manifest, model, Path(tmp) / f"run-{w}", w, cache,
                                threads=th)  # fmt: skip
                label = f"{w} workers" + (f", {th} torch thread{'s' * (th > 1)}" if th else "")
                rows.append((f"{label}, empty cache", info, time.perf_counter() - t0))
            if args.engine == "ray":  # side by side: Ray right after each local run
                for a in args.ray_actors:
                    opts = ("--engine", "ray", "--ray-actors", str(a),
                            "--ray-gpus-per-actor", str(args.ray_gpus_per_actor))  # fmt: skip
                    out, cache = Path(tmp) / f"ray-{w}-{a}", Path(tmp) / f"ray-cache-{w}-{a}"
                    t0 = time.perf_counter()
                    info = discover(args, manifest, model, out, 0, cache, opts)
                    rows.append((f"ray, {a} actor{'s' * (a > 1)}, empty cache", info,
                                 time.perf_counter() - t0))  # fmt: skip
        w = args.workers[-1]
        t0 = time.perf_counter()
        info = discover(args, manifest, model, Path(tmp) / f"run-{w}", w, Path(tmp) / f"cache-{w}")
        rows.append((f"{w} workers, cache filled", info, time.perf_counter() - t0))

    clip = rows[0][1].embeddings.clip
    print(f"cpu cores: {os.cpu_count()}; CLIP {args.clip} ({clip.precision}), "
          f"batch {args.batch_size}\n")  # fmt: skip
    if args.engine == "ray":
        print_engines(rows)
        return
    print("| run | images | embed stage (s) | images/s | whole command (s) |")
    print("|---|---:|---:|---:|---:|")
    for name, info, wall in rows:
        n = info.n_examples
        t = float(info.timings["embed"])
        rate = f"{n / t:,.0f}" if t > 0 else "n/a"
        print(f"| {name} | {n:,} | {t:.1f} | {rate} | {wall:.1f} |")


if __name__ == "__main__":
    main()
