"""How fast are embedded candidate captions ranked? Target: 100,000 per class in < 5 s.

Ranks ``--candidates`` random unit text embeddings (d=512) for each of
``--classes`` classes with both scoring methods of :mod:`failscope.caption.rank`,
including the top-k failure and success selection with one caption per
(family, word) group, and prints the time per class and the ratio to the 5 s
target. Embedding the captions is not timed (the text encoder's cost; cached
on disk after the first run). One candidate matrix is reused for every class,
with a different direction, reference and centroid per class, to keep memory at
~200 MB; the work per class is the same as with distinct matrices.

Usage::

    python benchmarks/caption_speed.py
    python benchmarks/caption_speed.py --candidates 100000 --classes 10 --dim 512
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from failscope.caption.rank import (
    centroid_scores,
    classifier_scores,
    failure_centroid,
    select_top,
)

TARGET_S = 5.0


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--candidates", type=int, default=100_000, help="candidates per class")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--top-k", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    n, d, k = args.candidates, args.dim, args.top_k
    gap = 2.0 * _unit(rng.normal(size=d))
    emb = _unit(gap + rng.normal(size=(n, d)).astype(np.float32))
    groups = [("family", i) for i in range(n)]  # worst case: every caption its own word
    scale = rng.uniform(0.5, 2.0, size=d).astype(np.float32)
    images = _unit(rng.normal(size=(2000, d)))
    img_scores = rng.normal(size=2000)

    times: dict[str, list[float]] = {"classifier": [], "centroid": []}
    for _ in range(args.classes):
        direction = _unit(rng.normal(size=d))
        reference = _unit(gap + rng.normal(size=d))
        t = time.perf_counter()
        s = classifier_scores(emb, reference=reference, direction=direction, scale=scale)
        select_top(s, k, largest=True, groups=groups)
        select_top(s, k, largest=False, groups=groups)
        times["classifier"].append(time.perf_counter() - t)

        t = time.perf_counter()
        v = failure_centroid(images, img_scores, n=50)
        s = centroid_scores(emb, centroid=v)
        select_top(s, k, largest=True, groups=groups)
        v_ok = failure_centroid(images, -img_scores, n=50)  # the success end's own centroid
        s_ok = -centroid_scores(emb, centroid=v_ok)
        select_top(s_ok, k, largest=False, groups=groups)
        times["centroid"].append(time.perf_counter() - t)

    print(
        f"ranking {n:,} embedded candidates per class (d={d}, {args.classes} classes, "
        f"top-{k} failure + success, distinct groups); {os.cpu_count()} CPUs visible"
    )
    head = "| method | s per class (mean) | s per class (max) | s all classes |"
    print(f"{head} max / {TARGET_S:g} s target |")
    print("|---|---:|---:|---:|---:|")
    for method, ts in times.items():
        arr = np.asarray(ts)
        print(
            f"| {method} | {arr.mean():.3f} | {arr.max():.3f} | {arr.sum():.2f} | "
            f"{arr.max() / TARGET_S:.3f} |"
        )


if __name__ == "__main__":
    main()
