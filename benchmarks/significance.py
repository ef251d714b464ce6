"""Calibration and power of ErrorDirections' significance test against the reference.

The reference is the textbook permutation test of the CV score: shuffle each
class's error labels, refit the whole procedure (folds, C search with widening, CV
score at the chosen C), and count how often the shuffled CV score reaches the
observed one. It costs ``n_permutations`` fits. ErrorDirections' own test
(:func:`failscope.evidence.fold_test`) shuffles only the held-out labels of each
fold against classifiers already fitted, so it costs no refit.

For embeddings with no information about the errors (strength 0) both must reject
at most ``alpha`` of the classes; with planted failure directions of growing
strength, the rejection rates show the power of each. Embeddings are anisotropic
Gaussians, L2-normalised like CLIP's; errors follow a logistic model along one
hidden direction per class.

Usage::

    python benchmarks/significance.py                 # ~3 minutes on 2 cores
    python benchmarks/significance.py --classes 100 --reference-permutations 49
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.stats import spearmanr

from failscope import ErrorDirections


def make_classes(
    n_classes: int, per_class: int, dim: int, strength: float, error_rate: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Embeddings, labels and predictions; errors depend on one hidden direction per class.

    ``strength`` is the logistic slope of the error probability along the hidden
    direction (in units of its standard deviation); 0 makes errors independent of
    the embeddings.
    """
    rng = np.random.default_rng(seed)
    scale = np.geomspace(3.0, 0.1, dim)  # anisotropic spectrum
    x = rng.normal(size=(n_classes * per_class, dim)) * scale
    labels = np.repeat(np.arange(n_classes), per_class)
    x += rng.normal(size=(n_classes, dim))[labels] * scale
    hidden = rng.normal(size=(n_classes, dim))
    hidden /= np.linalg.norm(hidden, axis=1, keepdims=True)
    along = np.einsum("nd,nd->n", x / scale, hidden[labels])
    along -= along.mean()
    offset = np.log(error_rate / (1 - error_rate))
    wrong = rng.random(len(x)) < 1 / (1 + np.exp(-(offset + strength * along)))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    pred = np.where(wrong, (labels + 1) % n_classes, labels)
    return x.astype(np.float32), labels, pred


def reference_p_values(
    x: np.ndarray, labels: np.ndarray, pred: np.ndarray, n_permutations: int, seed: int
) -> np.ndarray:
    """Permutation p-values of each class's CV score, refitting everything per shuffle."""
    est = ErrorDirections(n_permutations=1, random_state=seed)
    observed = est.fit(x, labels, pred).cv_scores_
    wrong = pred != labels
    rng = np.random.default_rng(seed)
    order = np.argsort(labels, kind="stable")
    bounds = np.cumsum(np.bincount(labels))[:-1]
    hits = np.zeros(len(observed))
    for _ in range(n_permutations):
        shuffled = wrong.copy()
        for idx in np.split(order, bounds):  # shuffle within each class
            shuffled[idx] = wrong[rng.permutation(idx)]
        fake = np.where(shuffled, (labels + 1) % (labels.max() + 1), labels)
        hits += est.fit(x, labels, fake).cv_scores_ >= observed - 1e-12
    return (1 + hits) / (1 + n_permutations)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=200)
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--error-rate", type=float, default=0.2)
    parser.add_argument("--strengths", type=float, nargs="+", default=[0.0, 1.0, 2.0, 3.0])
    parser.add_argument("--reference-permutations", type=int, default=99)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(
        f"{args.classes} classes x {args.per_class} examples x {args.dim} dims, "
        f"{args.error_rate:.0%} errors; reference: {args.reference_permutations} refits\n"
    )
    print(
        "| strength | test | p<=0.05 | p<=0.01 | CPU ms/class | Spearman vs reference |\n"
        "|---:|---|---:|---:|---:|---:|"
    )
    for strength in args.strengths:
        x, labels, pred = make_classes(
            args.classes, args.per_class, args.dim, strength, args.error_rate, args.seed
        )
        c0 = time.process_time()
        fast = ErrorDirections(random_state=args.seed).fit(x, labels, pred).p_values_
        c1 = time.process_time()
        ref = reference_p_values(x, labels, pred, args.reference_permutations, args.seed)
        c2 = time.process_time()
        ok = np.isfinite(fast)
        rho = spearmanr(fast[ok], ref[ok]).statistic
        for name, p, cpu in (
            ("fold permutations", fast, c1 - c0),
            ("refit reference", ref, c2 - c1),
        ):
            print(
                f"| {strength:g} | {name} | {np.mean(p[ok] <= 0.05):.3f} | "
                f"{np.mean(p[ok] <= 0.01):.3f} | {1e3 * cpu / ok.sum():.1f} | "
                f"{rho:.2f} |"
            )


if __name__ == "__main__":
    main()
