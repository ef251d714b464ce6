"""ErrorDirections vs the original libsvm recipe, side by side on the same features.

The original failure-directions recipe fits, per class, ``SVC(kernel="linear",
class_weight="balanced")`` for 7 values of C x 2 CV folds, then refits at the best C.
This script runs that recipe and failscope's ``ErrorDirections`` (default solver) on
the same synthetic CLIP-like features, in one process, and prints the speed ratio and
the held-out AUROC of both. ``ErrorDirections`` is timed twice: with its defaults,
which also widen the C grid at an edge and run a permutation test per class, and
doing the recipe's work only (``widen_Cs=False, n_permutations=0``).

Usage::

    python benchmarks/directions_speed.py                   # 10 classes x 5,000 val x 512 d
    python benchmarks/directions_speed.py --per-class 5000  # 5,000 per class (slow SVC)
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import SVC

from failscope import ErrorDirections
from failscope.directions import DEFAULT_CS


def make_world(n_classes: int, dim: int, seed: int) -> dict:
    """Class centres and one hidden failure direction per class."""
    rng = np.random.default_rng(seed)
    hidden = rng.normal(size=(n_classes, dim))
    hidden /= np.linalg.norm(hidden, axis=1, keepdims=True)
    return {"centres": rng.normal(size=(n_classes, dim)) * 0.6, "hidden": hidden}


def make_features(world: dict, per_class: int, seed: int) -> dict:
    """CLIP-like features: class clusters on a sphere, errors driven by the hidden direction."""
    rng = np.random.default_rng(seed)
    centres, hidden = world["centres"], world["hidden"]
    n_classes, dim = centres.shape
    n = n_classes * per_class
    labels = np.repeat(np.arange(n_classes), per_class)
    x = centres[labels] + rng.normal(size=(n, dim))
    along = np.einsum("nd,nd->n", x - centres[labels], hidden[labels])
    # ~15% errors, mostly (not only) far along the hidden direction
    logit = 2.5 * (along - 1.3) + rng.normal(scale=1.0, size=n)
    wrong = rng.random(n) < 1 / (1 + np.exp(-logit))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return {"x": x.astype(np.float32), "labels": labels, "wrong": wrong}


def svc_recipe(z: np.ndarray, labels: np.ndarray, wrong: np.ndarray, seed: int) -> list:
    """The original recipe on already-preprocessed features; returns per-class models."""
    models = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        x, y = z[idx], wrong[idx].astype(int)
        folds = StratifiedKFold(n_splits=2, shuffle=True, random_state=seed)
        scores = []
        for cval in DEFAULT_CS:
            s = []
            for tr, te in folds.split(x, y):
                m = SVC(kernel="linear", C=cval, class_weight="balanced").fit(x[tr], y[tr])
                pred = m.predict(x[te])
                s.append(0.5 * ((pred[y[te] == 1] == 1).mean() + (pred[y[te] == 0] == 0).mean()))
            scores.append(np.mean(s))
        best = DEFAULT_CS[int(np.argmax(scores))]
        models.append(SVC(kernel="linear", C=best, class_weight="balanced").fit(x, y))
    return models


def _timed(fn, repeat: int) -> tuple[Any, float, float]:
    """Run ``fn`` ``repeat`` times; return its last result, median wall and CPU seconds."""
    walls, cpus = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return out, float(np.median(walls)), float(np.median(cpus))


def compare(classes: int, per_class: int, dim: int, seed: int, repeat: int = 1) -> dict:
    """Fit both on one validation set; time them (median of ``repeat``) and score AUROC."""
    world = make_world(classes, dim, seed)
    val = make_features(world, per_class, seed + 1)
    test = make_features(world, per_class, seed + 2)
    pred_val = np.where(val["wrong"], (val["labels"] + 1) % classes, val["labels"])

    est, t_fast, c_fast = _timed(
        lambda: ErrorDirections(random_state=seed).fit(val["x"], val["labels"], pred_val), repeat
    )
    _, t_same, c_same = _timed(
        lambda: ErrorDirections(random_state=seed, widen_Cs=False, n_permutations=0).fit(
            val["x"], val["labels"], pred_val
        ),
        repeat,
    )
    auc_fast = roc_auc_score(test["wrong"], est.failure_score(test["x"], test["labels"]))

    # Same preprocessing for both: the estimator's standardise + L2-normalise.
    z_val, z_test = est.transform(val["x"]), est.transform(test["x"])
    models, t_svc, c_svc = _timed(
        lambda: svc_recipe(z_val, val["labels"], val["wrong"], seed), repeat
    )
    svc_scores = np.empty(len(z_test))
    for c, m in enumerate(models):
        sel = test["labels"] == c
        svc_scores[sel] = m.decision_function(z_test[sel])
    auc_svc = roc_auc_score(test["wrong"], svc_scores)
    return {
        "t_svc": t_svc,
        "t_fast": t_fast,
        "t_same": t_same,
        "c_svc": c_svc,
        "c_fast": c_fast,
        "c_same": c_same,
        "auc_svc": auc_svc,
        "auc_fast": auc_fast,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--val", type=int, default=5000, help="validation examples in all")
    parser.add_argument("--per-class", type=int, default=None, help="overrides --val")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--repeat", type=int, default=3, help="time each side this many times (median)"
    )
    args = parser.parse_args()
    per_class = args.per_class or args.val // args.classes

    print(
        f"{args.classes} classes x {args.classes * per_class} validation examples "
        f"({per_class}/class) x {args.dim} dims, test set of the same size\n"
    )
    print(
        "| seed | libsvm SVC (s) | ErrorDirections (s) | speedup | recipe's work only (s) "
        "| speedup | AUROC SVC | AUROC ours | diff |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    compare(args.classes, 60, 64, seed=99)  # warm-up: imports and first-call costs, both sides
    rows = [compare(args.classes, per_class, args.dim, s, args.repeat) for s in range(args.seeds)]
    for s, r in enumerate(rows):
        print(
            f"| {s} | {r['t_svc']:.2f} | {r['t_fast']:.3f} | {r['t_svc'] / r['t_fast']:.1f}x "
            f"| {r['t_same']:.3f} | {r['t_svc'] / r['t_same']:.1f}x "
            f"| {r['auc_svc']:.4f} | {r['auc_fast']:.4f} | {r['auc_fast'] - r['auc_svc']:+.4f} |"
        )
    t_svc = sum(r["t_svc"] for r in rows)
    diff = np.mean([r["auc_fast"] - r["auc_svc"] for r in rows])
    for name, key in (("defaults", "fast"), ("recipe's work only", "same")):
        t = sum(r[f"t_{key}"] for r in rows)
        c_ratio = sum(r["c_svc"] for r in rows) / sum(r[f"c_{key}"] for r in rows)
        print(
            f"\ntotal speedup, {name}: {t_svc / t:.1f}x wall-clock ({c_ratio:.1f}x CPU time), "
            f"median of {args.repeat} runs per side"
        )
    print(f"mean AUROC difference (defaults): {diff:+.4f}")


if __name__ == "__main__":
    main()
