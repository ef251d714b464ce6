"""Several failure modes per class: each mode its own slice, one mode one slice."""

from __future__ import annotations

import numpy as np
import pytest

from failscope.slicers import load_slicer, make_slicer
from failscope.slicers.directions import _slice_meta


def two_mode_data(seed: int = 0, n: int = 900, d: int = 24):
    """Class 0 fails in two ways (axis 0 and axis 1); class 1 fails one way (axis 2)."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n // 2)
    x = rng.normal(size=(n, d)).astype(np.float32)
    x[:, 5] += 3.0 * y  # the classes differ along axis 5
    a = (y == 0) & (rng.random(n) < 0.2)
    b = (y == 0) & ~a & (rng.random(n) < 0.2)
    c = (y == 1) & (rng.random(n) < 0.25)
    x[a, 0] += 3.0
    x[b, 1] += 3.0
    x[c, 2] += 3.0
    wrong = (a | b | c) & (rng.random(n) < 0.85) | (rng.random(n) < 0.04)
    pred = np.where(wrong, 1 - y, y)
    return x, y, pred, {"a": a, "b": b, "c": c}


def _best_match(scores: np.ndarray, members: np.ndarray) -> tuple[int, float]:
    from sklearn.metrics import average_precision_score

    aps = [average_precision_score(members, s) for s in scores.T if np.isfinite(s).all()]
    return int(np.argmax(aps)), float(max(aps))


def test_split_gives_each_mode_its_own_slice():
    """Over seeds: the class that fails two ways gets two distinct slices ranking each mode;
    one blended direction ranks the two modes far worse; the one-mode class's top slice is
    its mode."""
    distinct, split_min, blend_min, single = [], [], [], []
    for seed in range(6):
        x, y, pred, modes = two_mode_data(seed=seed, n=1600)
        fit = np.arange(len(y)) % 2 == 0
        slicer = make_slicer("directions").fit(x[fit], y[fit], pred[fit])  # the default
        test = ~fit
        scores = slicer.score(x[test], y[test])
        in0 = y[test] == 0
        k = len(slicer.slices_of(0))
        best_a = _best_match(scores[in0][:, :k], modes["a"][test][in0])
        best_b = _best_match(scores[in0][:, :k], modes["b"][test][in0])
        distinct.append(best_a[0] != best_b[0])
        split_min.append(min(best_a[1], best_b[1]))
        one = make_slicer("directions:max_slices=1").fit(x[fit], y[fit], pred[fit])
        blended = one.score(x[test], y[test])[in0]
        blend_min.append(min(_best_match(blended, modes[m][test][in0])[1] for m in "ab"))
        in1 = ~in0
        single.append(_best_match(scores[in1][:, :1], modes["c"][test][in1])[1])
        assert all(s.significant for s in slicer.slices_)
    assert sum(distinct) >= 5, distinct
    assert np.mean(split_min) > 0.85, split_min
    assert np.mean(blend_min) < np.mean(split_min) - 0.15, (blend_min, split_min)
    assert min(single) > 0.9, single


@pytest.mark.parametrize("mode", ["residual", "project", "split"])
def test_max_slices_1_is_the_single_direction(mode):
    x, y, pred, _ = two_mode_data(seed=1)
    one = make_slicer(f"directions:max_slices=1,mode={mode}").fit(x, y, pred)
    np.testing.assert_array_equal(one.score(x, y)[:, 0], one.estimator_.failure_score(x, y))
    assert one.n_columns_ == 1


@pytest.mark.parametrize(
    "spec", ["directions:max_slices=3", "directions:max_slices=3,mode=split", "mixture"]
)
def test_no_failure_mode_no_extra_slice(spec):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(800, 16)).astype(np.float32)
    y = np.repeat([0, 1], 400)
    wrong = rng.random(800) < 0.2  # errors independent of the embeddings
    slicer = make_slicer(spec).fit(x, y, np.where(wrong, 1 - y, y))
    assert sum(s.significant for s in slicer.slices_) <= 1  # at most a chance finding
    assert all(len(slicer.slices_of(c)) <= 1 for c in (0, 1))


@pytest.mark.parametrize("spec", ["directions:max_slices=3,mode=split", "mixture"])
def test_saved_multimode_slicer_scores_identically(tmp_path, spec):
    x, y, pred, _ = two_mode_data(seed=3)
    slicer = make_slicer(spec).fit(x, y, pred)
    slicer.save(tmp_path / "s.npz")
    back = load_slicer(tmp_path / "s.npz")
    np.testing.assert_array_equal(back.score(x, y), slicer.score(x, y))
    assert [(s.class_index, s.rank, s.size) for s in back.slices_] == [
        (s.class_index, s.rank, s.size) for s in slicer.slices_
    ]


def test_same_seed_same_slices():
    x, y, pred, _ = two_mode_data(seed=4)
    a = make_slicer("mixture:random_state=3").fit(x, y, pred)
    b = make_slicer("mixture:random_state=3").fit(x, y, pred)
    np.testing.assert_array_equal(a.score(x, y), b.score(x, y))


@pytest.mark.parametrize("spec", ["directions", "mixture", "attribution:n_clusters=4"])
def test_worker_processes_give_the_same_slices(spec):
    x, y, pred, _ = two_mode_data(seed=5)
    serial = make_slicer(spec).fit(x, y, pred)
    workers = make_slicer(spec).set_params(n_jobs=2).fit(x, y, pred)
    assert [_slice_meta(s) for s in workers.slices_] == [_slice_meta(s) for s in serial.slices_]
    for a, b in zip(workers.slices_, serial.slices_, strict=True):
        np.testing.assert_array_equal(a.direction, b.direction)
    np.testing.assert_array_equal(workers.score(x, y), serial.score(x, y))
