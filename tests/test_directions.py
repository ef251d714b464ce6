"""ErrorDirections: recovery of a planted direction, edge cases, sklearn conventions."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.metrics import roc_auc_score

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
    assert est.cv_scores_.shape == (3,) and est.cv_results_.shape == (3, 7)
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
    assert back.skip_reasons_ == est.skip_reasons_


def test_memmap_input_in_chunks(tmp_path):
    x, y, pred, _, _ = planted(n_per_class=300)
    np.save(tmp_path / "x.npy", x)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    est = ErrorDirections().fit(mm, y, pred)
    np.testing.assert_allclose(
        est.failure_score(mm, y, chunk=97), est.failure_score(x, y), rtol=1e-6, atol=1e-6
    )
