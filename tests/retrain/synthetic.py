"""A small synthetic slice problem and a fake discover run for the retrain tests.

Backbone features: class means plus noise. One planted slice, "class 0 with a rare
attribute", sits on class 1's mean, shifted along a direction ``u`` that only the slice
has. The slice is rare in train (so an ERM head sacrifices it) and common in val/test.
CLIP-like embeddings are a random rotation of [features, attribute, noise].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

N_CLASSES = 4
DIM = 16


def make_problem(
    *,
    seed: int = 0,
    n_train: int = 2000,
    n_val: int = 800,
    n_test: int = 800,
    rate_train: float = 0.03,
    rate_eval: float = 0.3,
    shift: float = 3.0,
    noise: float = 0.7,
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(N_CLASSES, DIM)) * 1.5
    u = np.zeros(DIM)
    u[-1] = 1.0
    means[:, -1] = 0.0
    out: dict[str, list] = {"features": [], "label": [], "split": [], "attr": []}
    for split, n, rate in (
        ("train", n_train, rate_train),
        ("val", n_val, rate_eval),
        ("test", n_test, rate_eval),
    ):
        y = rng.integers(0, N_CLASSES, size=n)
        attr = (y == 0) & (rng.random(n) < rate)
        centre = means[np.where(attr, 1, y)]
        f = centre + noise * rng.normal(size=(n, DIM)) + shift * attr[:, None] * u
        out["features"].append(f)
        out["label"].append(y)
        out["split"].append(np.full(n, split))
        out["attr"].append(attr)
    return {k: np.concatenate(v) for k, v in out.items()} | {"means": means}


def audited_head(problem: dict[str, np.ndarray], *, seed: int = 0):
    """A linear head trained by plain ERM on the train split (the audited model)."""
    from sklearn.linear_model import LogisticRegression

    tr = problem["split"] == "train"
    lr = LogisticRegression(C=1.0, max_iter=2000).fit(problem["features"][tr], problem["label"][tr])
    return lr.coef_.astype(np.float32), lr.intercept_.astype(np.float32)


def make_run(
    path: Path,
    problem: dict[str, np.ndarray],
    *,
    with_slices: bool = True,
    clip_dim: int = 24,
    seed: int = 0,
) -> Path:
    """Run the real discover on ``problem`` (given embeddings and predictions); return its path.

    ``with_slices=False`` makes the audited model right on every fitting example, so
    every class is skipped and the run has no slice.
    """
    from runbuilder import build_run

    rng = np.random.default_rng(seed + 100)
    f, y, split, attr = (problem[k] for k in ("features", "label", "split", "attr"))
    w, b = audited_head(problem, seed=seed)
    pred = (f @ w.T + b).argmax(axis=1)
    if not with_slices:
        pred = np.where(split == "val", y, pred)
    n = len(y)
    raw = np.concatenate(
        [
            f,
            2.0 * attr[:, None] + 0.3 * rng.normal(size=(n, 1)),
            rng.normal(size=(n, clip_dim - DIM - 1)),
        ],
        axis=1,
    )
    rot, _ = np.linalg.qr(rng.normal(size=(clip_dim, clip_dim)))
    emb = (raw @ rot).astype(np.float32)
    metadata = {"planted_rare_zero": attr}
    if "true" in problem:
        metadata["true_label"] = problem["true"]
    build_run(
        path, embeddings=emb, labels=y, predictions=pred, splits=split,
        class_names=[str(c) for c in range(N_CLASSES)], metadata=metadata,
    )  # fmt: skip
    return path


def make_noisy_problem(*, seed: int = 0, rate: float = 0.9, n: int = 2400) -> dict[str, np.ndarray]:
    """Label noise: a third of class 0 carries attribute ``u``; in train, ``rate`` of those
    are labelled 1. Val and test labels are clean. Like :func:`make_problem`'s output, plus
    ``true_label``."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(N_CLASSES, DIM)) * 1.5
    means[:, -1] = 0.0
    out: dict[str, list] = {"features": [], "label": [], "split": [], "attr": [], "true": []}
    for split, size in (("train", n), ("val", n // 3), ("test", n // 3)):
        y = rng.integers(0, N_CLASSES, size=size)
        attr = (y == 0) & (rng.random(size) < 1 / 3)
        f = means[y] + 0.7 * rng.normal(size=(size, DIM))
        f[:, -1] += 3.0 * attr
        given = y.copy()
        if split == "train":
            given[attr & (rng.random(size) < rate)] = 1
        out["features"].append(f)
        out["label"].append(given)
        out["true"].append(y)
        out["split"].append(np.full(size, split))
        out["attr"].append(attr)
    return {k: np.concatenate(v) for k, v in out.items()}
