"""Failure directions at scale: wall time, peak memory and quality from 100k to 1M examples.

For each size, synthetic CLIP-like embeddings (unit norm, a shared mean component
and a power-law spectrum in a random rotation, as CLIP's) with one planted failure
direction per class are written as ``.npy`` memory maps, chunk by chunk. A fresh
process per size and per ``n_jobs`` then fits :class:`~failscope.ErrorDirections`
on the ``val`` half (standardised by the ``train`` half, at most 200,000 rows, as
``discover`` does) straight from the memory map, and scores every example with
``failure_score``; it reports its own wall times, its peak RSS (``ru_maxrss``) and
sampled peaks of the RSS of it and its worker processes together (total, and not
file-backed), so sizes do not contaminate each other.
Quality: the cosine between each recovered direction and the planted one (mapped
into the standardised space), the held-out AUROC of the failure score against the
errors next to the oracle AUROC of the planted score, and the share of classes
whose direction is significant.

Usage::

    python benchmarks/scale.py                       # 100k, 300k, 1M (~10 min on 2 cores)
    python benchmarks/scale.py --sizes 100000 --jobs 1 2
    python benchmarks/scale.py --folder /tmp/fs-scale  # keep the files for later runs

``make_synthetic`` is importable (returns the paths of the arrays it wrote).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

CHUNK = 65_536
REFERENCE_MAX_ROWS = 200_000  # as failscope.pipeline


def make_synthetic(
    n: int,
    n_classes: int,
    d: int,
    seed: int,
    folder: str | os.PathLike[str],
    *,
    error_rate: float = 0.15,
) -> dict[str, Path]:
    """Write CLIP-like embeddings with planted failure directions, chunk by chunk.

    Every class has ``n // n_classes`` examples (labels in random order), half of
    them in split ``val`` and half in ``train``. An example's error probability is
    logistic in its planted score (its within-class offset along the class's hidden
    direction, in standard deviations), plus 2% errors at random; a wrong
    prediction names a random other class. Memory stays at a few chunks whatever ``n``.

    Returns
    -------
    dict of str to Path
        ``embeddings`` (n, d) float32, ``labels`` and ``predictions`` (n,) int64,
        ``splits`` (n,) ``"train"``/``"val"``, ``planted_scores`` (n,) float32, and
        ``directions`` (n_classes, d) float64: the hidden unit directions in the
        raw embedding space (before L2 normalisation).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    spectrum = np.arange(1, d + 1) ** -0.6  # CLIP-like decay of the covariance spectrum
    rotation = np.linalg.qr(rng.normal(size=(d, d)))[0]
    shared = rng.normal(size=d) * 1.2 / np.sqrt(d)  # the common component CLIP embeddings share
    centres = (rng.normal(size=(n_classes, d)) * np.sqrt(spectrum)) @ rotation * 0.8
    directions = rng.normal(size=(n_classes, d))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    # per-class std of the planted score: |diag(spectrum) R w|
    spread = np.linalg.norm((directions @ rotation.T) * spectrum, axis=1) / np.sqrt(d)
    per_class = n // n_classes
    labels = rng.permutation(np.repeat(np.arange(n_classes), per_class))
    n = len(labels)
    splits = np.where(rng.random(n) < 0.5, "val", "train")
    names = ("embeddings", "labels", "predictions", "splits", "planted_scores", "directions")
    paths = {k: folder / f"{k}.npy" for k in names}
    emb = np.lib.format.open_memmap(paths["embeddings"], mode="w+", dtype=np.float32, shape=(n, d))
    planted = np.empty(n, dtype=np.float32)
    predictions = labels.copy()
    logit_offset = np.log(error_rate / (1 - error_rate)) - 1.0
    for s in range(0, n, CHUNK):
        y = labels[s : s + CHUNK]
        noise = (rng.normal(size=(len(y), d)) * spectrum / np.sqrt(d)) @ rotation
        t = np.einsum("nd,nd->n", noise, directions[y]) / spread[y]
        wrong = rng.random(len(y)) < 1 / (1 + np.exp(-(logit_offset + 2.5 * t)))
        wrong |= rng.random(len(y)) < 0.02
        other = (y + rng.integers(1, n_classes, size=len(y))) % n_classes
        predictions[s : s + CHUNK] = np.where(wrong, other, y)
        x = shared + centres[y] + noise
        emb[s : s + CHUNK] = x / np.linalg.norm(x, axis=1, keepdims=True)
        planted[s : s + CHUNK] = t
    emb.flush()
    del emb
    for key, arr in (("labels", labels), ("predictions", predictions), ("splits", splits),
                     ("planted_scores", planted), ("directions", directions)):  # fmt: skip
        np.save(paths[key], arr)
    return paths


class _TreeMemory:
    """Peak memory of this process and its descendants (joblib workers), from /proc.

    The total is the sum of each process's own peak (``VmHWM``), an upper bound of
    their peak together; the part that is not a mapped file (``RssAnon``, which
    excludes the memory-mapped embeddings) is summed over the tree every ``every``
    seconds.
    """

    def __init__(self, every: float = 0.25) -> None:
        self.peak_anon = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every,), daemon=True)
        self._thread.start()

    def _run(self, every: float) -> None:
        while not self._stop.wait(every):
            self.sample()

    def sample(self) -> None:
        anon = sum(_status(pid).get("RssAnon", 0) for pid in _tree(os.getpid()))
        self.peak_anon = max(self.peak_anon, anon)

    def stop(self) -> tuple[float, float]:
        """Stop sampling; return the peaks (total, not file-backed) in MB."""
        self._stop.set()
        self._thread.join()
        self.sample()
        total = sum(_status(pid).get("VmHWM", 0) for pid in _tree(os.getpid()))
        return total / 1024, self.peak_anon / 1024


def _status(pid: int) -> dict[str, int]:
    """The kB fields of /proc/PID/status (empty if the process is gone)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    return {k: int(v.split()[0]) for k, v in (ln.split(":", 1) for ln in lines) if v.endswith("kB")}


def _tree(root: int) -> list[int]:
    """``root`` and every process descended from it."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += parents.get(pid, [])
    return out


def _child(folder: Path, n_jobs: int) -> dict:
    """One measurement, in its own process: fit from the memory map, score, judge quality."""
    from sklearn.metrics import roc_auc_score

    from failscope import ErrorDirections

    memory = _TreeMemory()
    t0 = time.perf_counter()
    x = np.load(folder / "embeddings.npy", mmap_mode="r")
    labels = np.load(folder / "labels.npy")
    pred = np.load(folder / "predictions.npy")
    splits = np.load(folder / "splits.npy")
    fit_rows = np.flatnonzero(splits == "val")
    ref_rows = np.flatnonzero(splits == "train")
    if len(ref_rows) > REFERENCE_MAX_ROWS:
        rng = np.random.default_rng(0)
        ref_rows = np.sort(rng.choice(ref_rows, REFERENCE_MAX_ROWS, replace=False))
    est = ErrorDirections(n_jobs=n_jobs)
    est.fit(x, labels, pred, rows=fit_rows, reference_rows=ref_rows)
    t_fit = time.perf_counter() - t0
    t1 = time.perf_counter()
    scores = est.failure_score(x, labels)
    t_score = time.perf_counter() - t1

    planted = np.load(folder / "planted_scores.npy")
    hidden = np.load(folder / "directions.npy")
    expected = hidden * est.scale_  # x.w = z.(scale * w) + const in the standardised space
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    fitted = np.isfinite(est.directions_).all(axis=1)
    cosine = np.einsum("kd,kd->k", est.directions_[fitted].astype(np.float64), expected[fitted])
    held = splits == "train"
    wrong = pred != labels
    auroc, oracle = [], []
    order = np.argsort(labels[held], kind="stable")
    bounds = np.cumsum(np.bincount(labels[held], minlength=est.n_classes_))[:-1]
    for idx in np.split(np.flatnonzero(held)[order], bounds):
        if 0 < wrong[idx].sum() < len(idx) and np.isfinite(scores[idx]).all():
            auroc.append(roc_auc_score(wrong[idx], scores[idx]))
            oracle.append(roc_auc_score(wrong[idx], planted[idx]))
    return {
        "n": len(x),
        "classes": est.n_classes_,
        "n_jobs": n_jobs,
        "fit_s": t_fit,
        "score_s": t_score,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        **dict(zip(("tree_rss_mb", "tree_anon_mb"), memory.stop(), strict=True)),
        "cosine_median": float(np.median(cosine)),
        "auroc_mean": float(np.mean(auroc)),
        "oracle_auroc_mean": float(np.mean(oracle)),
        "significant": float(est.significant_[fitted].mean()),
        "cv_auroc_mean": float(np.nanmean(est.cv_auroc_)),
    }


def _measure(folder: Path, n_jobs: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(folder), str(n_jobs)],
        capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    parser.add_argument("--per-class", type=int, default=1000, help="examples per class")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folder", default=None, help="where the arrays go (default: a temp dir)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(Path(args.child[0]), int(args.child[1]))))
        return
    print(
        "| examples | classes | n_jobs | generate (s) | fit (s) | score (s) | peak RSS (MB) "
        "| with workers (MB) | of it not file-backed (MB) | cos to planted (median) "
        "| AUROC (oracle) | significant |\n"
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="fs-scale-") as tmp:
        root = Path(args.folder or tmp)
        for n in args.sizes:
            folder = root / f"n{n}-d{args.dim}-s{args.seed}"
            t0 = time.perf_counter()
            if not (folder / "directions.npy").exists():
                make_synthetic(n, max(2, n // args.per_class), args.dim, args.seed, folder)
            t_gen = time.perf_counter() - t0
            for n_jobs in args.jobs:
                r = _measure(folder, n_jobs)
                print(
                    f"| {r['n']:,} | {r['classes']} | {n_jobs} | {t_gen:.1f} | {r['fit_s']:.1f} "
                    f"| {r['score_s']:.1f} | {r['peak_rss_mb']:,.0f} | {r['tree_rss_mb']:,.0f} "
                    f"| {r['tree_anon_mb']:,.0f} "
                    f"| {r['cosine_median']:.3f} | {r['auroc_mean']:.3f} "
                    f"({r['oracle_auroc_mean']:.3f}) | {r['significant']:.0%} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
