"""ErrorDirections: recovery of a planted direction, significance, C widening, parallel
fits, edge cases, sklearn conventions."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.metrics import roc_auc_score

import failscope.directions as directions_module
from failscope import ErrorDirections, InputError
from failscope.directions import REASON_NO_CORRECT, REASON_NO_ERRORS


def planted(n_per_class: int = 2000, d: int = 64, k: int = 3, seed: int = 0):
    """Embeddings whose errors are decided by one hidden direction per class."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_per_class * k, d)).astype(np.float32)
    y = np.repeat(np.arange(k), n_per_class)
    true = rng.normal(size=(k, d))
    true /= np.linalg.norm(true, axis=1, keepdims=True)
    along = np.einsum("nd,nd->n", x, true[y])
    wrong = along + 0.3 * rng.normal(size=len(y)) > 1.0
    pred = np.where(wrong, (y + 1) % k, y)
    return x, y, pred, wrong, true


@pytest.mark.parametrize("solver", ["lssvm", "logistic"])
def test_recovers_planted_direction(solver):
    x, y, pred, wrong, true = planted()
    fit = np.random.default_rng(1).random(len(y)) < 0.5
    est = ErrorDirections(solver=solver).fit(x[fit], y[fit], pred[fit])
    # Standardisation of isotropic data is ~identity, so directions are comparable.
    cosines = np.einsum("kd,kd->k", est.directions_, true)
    assert cosines.min() >= 0.9, cosines
    scores = est.failure_score(x[~fit], y[~fit])
    assert roc_auc_score(wrong[~fit], scores) >= 0.9
    assert np.allclose(np.linalg.norm(est.directions_, axis=1), 1.0, atol=1e-5)


def test_dual_path_matches_primal_path():
    """n <= d (dual, kernel) and n > d (primal, eigh) solve the same problem."""
    x, y, pred, _, _ = planted(n_per_class=60, d=128, k=2, seed=3)
    est = ErrorDirections(Cs=(1.0,), cv=2).fit(x, y, pred)  # 60 <= 128: dual
    from failscope.directions import _balanced_weights, _lambdas, _lssvm_path

    z = est.transform(x).astype(np.float64)
    for c in range(2):
        idx = y == c
        t = np.where(pred[idx] != c, 1.0, -1.0)
        w, _ = _lssvm_path(z[idx], t, _balanced_weights(t), _lambdas(np.array([1.0]), len(t)))
        cos = w[0] @ est.directions_[c] / np.linalg.norm(w[0])
        # the dual carries the intercept as a lightly penalised constant feature
        assert cos > 0.999


def test_failure_score_higher_for_errors_and_signed_distance():
    x, y, pred, wrong, _ = planted(n_per_class=500, seed=2)
    est = ErrorDirections().fit(x, y, pred)
    s = est.failure_score(x, y)
    assert s[wrong].mean() > s[~wrong].mean()
    z = est.transform(x)
    manual = np.einsum("nd,nd->n", z, est.directions_[y]) + est.intercepts_[y]
    np.testing.assert_allclose(s, manual, rtol=1e-5, atol=1e-5)
    dec = est.decision_function(x)
    np.testing.assert_allclose(dec[np.arange(len(y)), y], s, rtol=1e-5, atol=1e-5)


def test_probabilities_as_predictions():
    x, y, pred, _, _ = planted(n_per_class=300)
    probs = np.eye(3)[pred] * 0.8 + 0.2 / 3
    a = ErrorDirections().fit(x, y, pred)
    b = ErrorDirections().fit(x, y, probs)
    np.testing.assert_array_equal(a.directions_, b.directions_)


def test_edge_cases_recorded_not_crashing():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 16)).astype(np.float32)
    y = np.repeat([0, 1, 2, 3], 50)
    y[-45:] = 4  # class 3 keeps 5 examples, class 4 has 45
    pred = y.copy()
    pred[:10] = 1  # class 0: 10 errors (fit normally)
    pred[50:100] = 0  # class 1: every example wrong
    # class 2: no errors; class 3: 5 examples (too few); class 4: one error (< cv)
    pred[-1] = 0
    est = ErrorDirections().fit(x, y, pred)
    reasons = est.skip_reasons_
    assert 0 not in reasons and np.isfinite(est.directions_[0]).all()
    assert reasons[1] == REASON_NO_CORRECT
    assert reasons[2] == REASON_NO_ERRORS
    assert "only 5 examples" in reasons[3]
    assert "only 1 error" in reasons[4]
    for c in (1, 2, 3, 4):
        assert np.isnan(est.directions_[c]).all() and np.isnan(est.cv_scores_[c])
    s = est.failure_score(x, y)
    assert np.isnan(s[y == 2]).all() and np.isfinite(s[y == 0]).all()


def test_nan_embeddings_are_a_clear_error():
    x, y, pred, _, _ = planted(n_per_class=50)
    x[7, 3] = np.nan
    with pytest.raises(InputError, match=r"NaN or inf \(row 7"):
        ErrorDirections().fit(x, y, pred)
    x[7, 3] = np.inf
    with pytest.raises(InputError, match="NaN or inf"):
        ErrorDirections().fit(x, y, pred)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scoring": "f1"}, "scoring='f1' is not one of"),
        ({"solver": "sgd"}, "solver='sgd' is not one of"),
        ({"Cs": (1.0, -1.0)}, "Cs must be"),
        ({"cv": 1}, "cv=1 must be >= 2"),
        ({"n_permutations": 0}, "n_permutations=0 must be >= 1"),
        ({"alpha": 1.5}, r"alpha=1.5 must lie in \(0, 1\)"),
        ({"correction": "holm"}, "correction='holm' is not one of"),
        ({"n_jobs": 0}, "n_jobs=0 is not allowed"),
    ],
)
def test_bad_params(kwargs, message):
    x, y, pred, _, _ = planted(n_per_class=50)
    with pytest.raises(ValueError, match=message):
        ErrorDirections(**kwargs).fit(x, y, pred)


def test_bad_lengths_and_labels():
    x, y, pred, _, _ = planted(n_per_class=50)
    with pytest.raises(InputError, match="predictions has 149 entries but there are 150"):
        ErrorDirections().fit(x, y, pred[:-1])
    with pytest.raises(InputError, match="class index 2 but there are only 2 classes"):
        ErrorDirections().fit(x, y, pred, n_classes=2)


def test_sklearn_conventions_clone_and_params():
    est = ErrorDirections(cv=3, scoring="roc_auc", random_state=5)
    twin = clone(est)
    assert twin.get_params() == est.get_params()
    with pytest.raises(TypeError):
        ErrorDirections(3)  # keyword-only hyperparameters
    x, y, pred, _, _ = planted(n_per_class=300)
    est.fit(x, y, pred)
    assert not hasattr(clone(est), "directions_")
    assert est.cv_scores_.shape == (3,) and est.cv_results_.shape == (3, len(est.Cs_))
    assert set(est.Cs) <= set(est.Cs_)
    assert 0.5 <= est.cv_scores_.min() <= 1.0


def test_deterministic_and_reference_statistics():
    x, y, pred, _, _ = planted(n_per_class=300)
    a = ErrorDirections(random_state=0).fit(x, y, pred)
    b = ErrorDirections(random_state=0).fit(x, y, pred)
    np.testing.assert_array_equal(a.directions_, b.directions_)
    ref = x * 2 + 1
    c = ErrorDirections().fit(x, y, pred, reference=ref)
    np.testing.assert_allclose(c.mean_, ref.mean(axis=0), atol=1e-4)
    np.testing.assert_allclose(c.scale_, ref.std(axis=0), rtol=1e-4)


def test_save_load_roundtrip(tmp_path):
    x, y, pred, _, _ = planted(n_per_class=300)
    est = ErrorDirections(cv=3).fit(x, y, pred)
    est.save(tmp_path / "est.npz")
    back = ErrorDirections.load(tmp_path / "est.npz")
    assert back.get_params() == est.get_params()
    np.testing.assert_array_equal(back.failure_score(x, y), est.failure_score(x, y))
    for name in ("p_values_", "significant_", "cv_auroc_", "C_at_edge_", "Cs_", "cv_results_"):
        np.testing.assert_array_equal(getattr(back, name), getattr(est, name), err_msg=name)
    assert back.skip_reasons_ == est.skip_reasons_


def test_memmap_input_in_chunks(tmp_path):
    x, y, pred, _, _ = planted(n_per_class=300)
    np.save(tmp_path / "x.npy", x)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    est = ErrorDirections().fit(mm, y, pred)
    np.testing.assert_allclose(
        est.failure_score(mm, y, chunk=97), est.failure_score(x, y), rtol=1e-6, atol=1e-6
    )


def noise(n_classes: int, per_class: int, d: int, error_rate: float, seed: int):
    """Anisotropic embeddings whose errors are independent of them (H0 true everywhere)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_classes * per_class, d)) * np.geomspace(3.0, 0.1, d)
    y = np.repeat(np.arange(n_classes), per_class)
    wrong = rng.random(len(y)) < error_rate
    return x.astype(np.float32), y, np.where(wrong, (y + 1) % n_classes, y)


def test_p_values_calibrated_on_noise():
    """Errors independent of the embeddings: at most ~alpha of the classes are flagged."""
    p = []
    for seed, (per_class, d, rate) in enumerate([(60, 128, 0.2), (120, 24, 0.3), (80, 48, 0.1)]):
        x, y, pred = noise(150, per_class, d, rate, seed)
        est = ErrorDirections(n_permutations=199, random_state=seed).fit(x, y, pred)
        p.append(est.p_values_)
    p = np.concatenate(p)
    assert np.isfinite(p).all() and len(p) == 450
    # 450 null classes: the rejection rate at 0.05 has a standard error of 0.01
    assert np.mean(p <= 0.05) <= 0.08, np.mean(p <= 0.05)
    assert np.mean(p <= 0.5) >= 0.3  # a real test, not one that never rejects


def test_planted_directions_are_significant():
    x, y, pred, _, _ = planted(n_per_class=600, d=64, k=4, seed=4)
    est = ErrorDirections().fit(x, y, pred)
    assert (est.p_values_ < 0.01).all(), est.p_values_
    assert est.significant_.all()
    assert (est.cv_auroc_ > 0.9).all()


def test_weak_class_is_not_significant_next_to_a_planted_one():
    x, y, pred, _, _ = planted(n_per_class=300, d=32, k=2, seed=5)
    rng = np.random.default_rng(0)
    in_1 = y == 1
    pred[in_1] = np.where(rng.random(in_1.sum()) < 0.2, 0, 1)  # class 1: errors at random
    est = ErrorDirections(random_state=1).fit(x, y, pred)
    assert est.p_values_[0] < 0.01 and est.significant_[0]
    assert est.p_values_[1] > 0.05 and not est.significant_[1]


def test_significance_and_directions_deterministic_and_same_with_workers():
    x, y, pred, _, _ = planted(n_per_class=200, d=48, k=6, seed=6)
    a = ErrorDirections(random_state=3).fit(x, y, pred)
    b = ErrorDirections(random_state=3).fit(x, y, pred)
    c = ErrorDirections(random_state=3, n_jobs=2).fit(x, y, pred)
    for other in (b, c):
        for name in ("directions_", "intercepts_", "p_values_", "cv_results_", "best_C_"):
            np.testing.assert_array_equal(getattr(a, name), getattr(other, name), err_msg=name)
    d = ErrorDirections(random_state=4).fit(x, y, pred)
    assert not np.array_equal(a.cv_results_, d.cv_results_)  # the seed matters


def test_bh_correction_flags_a_subset(caplog):
    x, y, pred, _, _ = planted(n_per_class=300, d=32, k=3, seed=7)
    xn, yn, predn = noise(40, 60, 32, 0.2, seed=8)
    x2 = np.vstack([x, xn])
    y2 = np.concatenate([y, yn + 3])
    p2 = np.concatenate([pred, predn + 3])
    none = ErrorDirections(n_permutations=1999).fit(x2, y2, p2)
    bh = ErrorDirections(n_permutations=1999, correction="bh").fit(x2, y2, p2)
    np.testing.assert_array_equal(none.p_values_, bh.p_values_)
    assert bh.significant_[:3].all()  # p = 2/2000 <= 0.05 * 3 / 43
    assert bh.significant_.sum() <= none.significant_.sum()
    with caplog.at_level(logging.WARNING, logger="failscope.evidence"):
        coarse = ErrorDirections(correction="bh").fit(x2, y2, p2)  # p >= 2/500
    assert not coarse.significant_.any()
    assert "raise n_permutations to 1720 or more" in caplog.text


def test_widening_follows_a_rising_cv_score(caplog):
    x, y, pred, _, _ = planted(n_per_class=400, d=32, k=3, seed=0)
    narrow = ErrorDirections(Cs=(10.0, 100.0), widen_Cs=False)
    with caplog.at_level(logging.WARNING, logger="failscope.directions"):
        narrow.fit(x, y, pred)
    assert (narrow.best_C_ == 100.0).all() and narrow.C_at_edge_.all()
    assert "pass widen_Cs=True" in caplog.text
    wide = ErrorDirections(Cs=(10.0, 100.0)).fit(x, y, pred)
    assert (wide.best_C_ > 100.0).all() and not wide.C_at_edge_.any()
    assert {10.0, 100.0, 1000.0} <= set(wide.Cs_)
    for c in range(3):  # each class's search: the user's grid, then decades upward
        tried = wide.Cs_[np.isfinite(wide.cv_results_[c])]
        np.testing.assert_allclose(tried, 10.0 ** np.arange(1, len(tried) + 1))
        assert wide.cv_scores_[c] == np.nanmax(wide.cv_results_[c])
    # the p-value is taken over the user's grid, so widening leaves it unchanged
    np.testing.assert_array_equal(wide.p_values_, narrow.p_values_)


def test_widening_stops_at_the_limit_and_warns(caplog, monkeypatch):
    monkeypatch.setattr(directions_module, "C_LIMITS", (1e-6, 1e3))
    x, y, pred, _, _ = planted(n_per_class=400, d=32, k=3, seed=0)
    with caplog.at_level(logging.WARNING, logger="failscope.directions"):
        est = ErrorDirections(Cs=(10.0, 100.0)).fit(x, y, pred)
    assert (est.best_C_ == 1e3).all() and est.C_at_edge_.all()
    assert est.Cs_.max() == 1e3
    assert "limited to [1e-06, 1000]" in caplog.text


def test_default_grid_unchanged_without_edge():
    """Widening touches only classes whose best C is at an end of the grid."""
    x, y, pred, _, _ = planted(n_per_class=300, d=32, k=4, seed=9)
    a = ErrorDirections(widen_Cs=False).fit(x, y, pred)
    b = ErrorDirections().fit(x, y, pred)
    for c in np.flatnonzero(~a.C_at_edge_):
        np.testing.assert_array_equal(a.directions_[c], b.directions_[c])
        assert a.best_C_[c] == b.best_C_[c]


def test_rows_fit_equals_fit_on_gathered_rows(tmp_path):
    x, y, pred, _, _ = planted(n_per_class=300, d=32, k=3, seed=10)
    rows = np.flatnonzero(np.random.default_rng(0).random(len(y)) < 0.6)
    np.save(tmp_path / "x.npy", x)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    a = ErrorDirections().fit(x[rows], y[rows], pred[rows])
    b = ErrorDirections().fit(mm, y, pred, rows=rows)
    for name in ("mean_", "scale_", "directions_", "intercepts_", "p_values_", "cv_results_"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    ref = np.flatnonzero(np.random.default_rng(1).random(len(y)) < 0.3)
    c = ErrorDirections().fit(x[rows], y[rows], pred[rows], reference=x[ref])
    d = ErrorDirections().fit(mm, y, pred, rows=rows, reference_rows=ref)
    np.testing.assert_array_equal(c.scale_, d.scale_)
    np.testing.assert_array_equal(c.directions_, d.directions_)
    with pytest.raises(InputError, match="rows holds row 900 but there are only 900 rows"):
        ErrorDirections().fit(x, y, pred, rows=[0, 900])


def test_load_refuses_file_without_significance(tmp_path):
    x, y, pred, _, _ = planted(n_per_class=100)
    est = ErrorDirections().fit(x, y, pred)
    est.save(tmp_path / "est.npz")
    with np.load(tmp_path / "est.npz") as data:
        old = {k: data[k] for k in data.files if k not in ("p_values_", "significant_")}
    np.savez(tmp_path / "old.npz", **old)
    with pytest.raises(InputError, match=r"lacks p_values_, significant_.*run discover again"):
        ErrorDirections.load(tmp_path / "old.npz")
