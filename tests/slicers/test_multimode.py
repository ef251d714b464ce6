"""Several failure modes per class: each mode its own slice, one mode one slice."""

from __future__ import annotations

import numpy as np
import pytest

from failscope.slicers import load_slicer, make_slicer


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


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_split_gives_each_mode_its_own_slice_and_one_mode_one_slice(seed):
    x, y, pred, modes = two_mode_data(seed=seed)
    fit = np.arange(len(y)) % 2 == 0
    slicer = make_slicer("directions:max_slices=3,mode=split").fit(x[fit], y[fit], pred[fit])
    assert len(slicer.slices_of(0)) == 2 and len(slicer.slices_of(1)) == 1
    assert all(s.significant for s in slicer.slices_)
    test = ~fit
    scores = slicer.score(x[test], y[test])
    in0 = y[test] == 0
    best_a = _best_match(scores[in0][:, :2], modes["a"][test][in0])
    best_b = _best_match(scores[in0][:, :2], modes["b"][test][in0])
    assert best_a[0] != best_b[0]  # distinct slices, each ranking its own mode first
    assert min(best_a[1], best_b[1]) > 0.75, (best_a, best_b)
    assert np.isnan(scores[~in0][:, 1]).all()  # class 1 has one slice: no second column
    # one direction blends the two modes: it ranks neither well
    blended = make_slicer("directions").fit(x[fit], y[fit], pred[fit]).score(x[test], y[test])
    blend_a = _best_match(blended[in0], modes["a"][test][in0])[1]
    assert blend_a < best_a[1] - 0.2, (blend_a, best_a)


@pytest.mark.parametrize("mode", ["residual", "project", "split"])
def test_max_slices_1_is_the_single_direction(mode):
    x, y, pred, _ = two_mode_data(seed=1)
    one = make_slicer(f"directions:mode={mode}").fit(x, y, pred)
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
