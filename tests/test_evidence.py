"""evidence: the fold permutation test, multiple testing, the tautology check."""

from __future__ import annotations

import itertools
import logging

import numpy as np
import pytest
from scipy.stats import chisquare, rankdata
from sklearn.metrics import roc_auc_score

from failscope import InputError
from failscope.evidence import (
    _average_ranks,
    _random_subsets,
    combine_fold_p_values,
    fold_test,
    significant,
    tautology_check,
)


def test_random_subsets_are_uniform_and_of_size_k():
    chosen = _random_subsets(np.random.default_rng(0), 5, 2, 20_000)
    assert chosen.shape == (20_000, 5) and (chosen.sum(axis=1) == 2).all()
    subsets = list(itertools.combinations(range(5), 2))
    codes = chosen @ (1 << np.arange(5))
    counts = [int(np.sum(codes == sum(1 << i for i in s))) for s in subsets]
    assert sum(counts) == 20_000
    assert chisquare(counts).pvalue > 1e-3, counts


def test_average_ranks_match_scipy_with_and_without_ties():
    rng = np.random.default_rng(5)
    a = rng.normal(size=(3, 50))
    np.testing.assert_array_equal(_average_ranks(a), rankdata(a, axis=1))
    a[1, :10] = a[1, 10]
    np.testing.assert_array_equal(_average_ranks(a), rankdata(a, axis=1))


def test_fold_test_matches_exact_enumeration():
    scores = np.array([[0.3, 2.0, -1.0, 0.7, 1.5, -0.2, 0.1, 0.9]])
    y = np.array([-1, 1, -1, -1, 1, -1, 1, -1], dtype=float)
    ranks = scores.argsort().argsort() + 1
    observed = ranks[0, y > 0].sum()
    sums = [ranks[0, list(s)].sum() for s in itertools.combinations(range(8), 3)]
    exact = np.mean(np.array(sums) >= observed)
    p, auroc = fold_test(scores, y, rng=np.random.default_rng(1), n_permutations=20_000)
    assert abs(p - exact) < 0.01, (p, exact)
    assert auroc[0] == pytest.approx(roc_auc_score(y > 0, scores[0]))


@pytest.mark.parametrize("n_pos", [6, 30])  # the minority is the errors, or the successes
def test_fold_test_uniform_under_the_null_with_grid_selection(n_pos):
    """Correlated rows (a C grid) and labels independent of them: p must be uniform.

    Taking the best row without repeating the maximum inside each shuffle would flag
    about twice as many at 0.05; this test would catch it.
    """
    rng = np.random.default_rng(2)
    n, reps = 40, 2000
    y = np.where(np.arange(n) < n_pos, 1.0, -1.0)
    p = np.empty(reps)
    for r in range(reps):
        base = rng.normal(size=n)
        grid = base + 0.8 * rng.normal(size=(7, n))  # 7 C values, correlated like a path
        p[r] = fold_test(grid, rng.permutation(y), rng=rng, n_permutations=99)[0]
    for level in (0.05, 0.2, 0.5):
        assert abs(np.mean(p <= level) - level) < 3.5 * np.sqrt(level * (1 - level) / reps), level


def test_fold_test_small_for_separated_scores():
    y = np.r_[np.ones(10), -np.ones(30)]
    scores = np.vstack([y + 0.1 * np.random.default_rng(3).normal(size=40)] * 3)
    p, _ = fold_test(scores, y, rng=np.random.default_rng(4), n_permutations=999)
    assert p == pytest.approx(1 / 1000)


def test_combine_fold_p_values_is_bonferroni():
    assert combine_fold_p_values([0.01, 0.2]) == pytest.approx(0.02)
    assert combine_fold_p_values([0.6, 0.9]) == 1.0


def test_significant_per_class_and_benjamini_hochberg():
    p = np.array([0.001, 0.04, np.nan, 0.03, 0.01, 0.2])
    np.testing.assert_array_equal(
        significant(p, alpha=0.05), [True, True, False, True, True, False]
    )
    # m = 5 tested: thresholds 0.01, 0.02, 0.03, 0.04, 0.05 on the sorted p-values
    np.testing.assert_array_equal(
        significant(p, alpha=0.05, correction="bh"), [True, True, False, True, True, False]
    )
    # step-up: the largest p under its threshold carries the smaller ones with it
    np.testing.assert_array_equal(
        significant([0.02, 0.021, 0.022], alpha=0.05, correction="bh"), [True, True, True]
    )
    np.testing.assert_array_equal(
        significant([0.02, 0.5, 0.6], alpha=0.05, correction="bh"), [False, False, False]
    )
    with pytest.raises(InputError, match="correction='fdr' is not one of"):
        significant(p, correction="fdr")


def audited_model_and_embeddings(seed: int):
    """A tiny torch MLP audited on data where it leans on a spurious code.

    Returns its penultimate features, independent "CLIP-like" embeddings of the
    content (which do not see the spurious code), labels and predictions.
    """
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    rng = np.random.default_rng(seed)
    k, d_in, n = 4, 8, 2000
    centres = rng.normal(size=(k, d_in)) * 1.5

    def draw(p_match: float):
        y = rng.integers(0, k, n)
        content = centres[y] + rng.normal(size=(n, d_in))
        code = np.where(rng.random(n) < p_match, y, rng.integers(0, k, n))
        inputs = np.hstack([content, 3 * np.eye(k)[code] + 0.1 * rng.normal(size=(n, k))])
        return y, content, torch.from_numpy(inputs.astype(np.float32))

    y_train, _, v_train = draw(1.0)  # in training the code always names the class
    y, content, v = draw(0.6)  # in the audit it is random 40% of the time
    torch.manual_seed(seed)
    hidden = torch.nn.Sequential(torch.nn.Linear(d_in + k, 16), torch.nn.ReLU())
    head = torch.nn.Linear(16, k)
    opt = torch.optim.Adam([*hidden.parameters(), *head.parameters()], lr=0.02)
    for _ in range(150):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(hidden(v_train)), torch.from_numpy(y_train))
        loss.backward()
        opt.step()
    with torch.no_grad():
        features = hidden(v)
        pred = head(features).argmax(dim=1).numpy()
    clip_like = np.tanh(content @ rng.normal(size=(d_in, 32)) / 2) + 0.1 * rng.normal(size=(n, 32))
    return features.numpy(), clip_like, y, pred


@pytest.mark.parametrize("seed", [0, 1])
def test_tautology_check_separates_own_features_from_independent_embeddings(seed, caplog):
    features, clip_like, y, pred = audited_model_and_embeddings(seed)
    assert 0.05 < np.mean(pred != y) < 0.3
    with caplog.at_level(logging.WARNING, logger="failscope.evidence"):
        own = tautology_check(features, y, pred)
    assert own.tautological and own.mimicry > 0.85, own
    assert "audited model's own features" in caplog.text
    independent = tautology_check(clip_like, y, pred)
    assert not independent.tautological and independent.mimicry < 0.3, independent
    assert independent.recovery > independent.mimicry
    assert own.n_errors == independent.n_errors > 50


def test_tautology_check_needs_errors():
    x = np.random.default_rng(0).normal(size=(50, 4))
    y = np.repeat([0, 1], 25)
    with pytest.raises(InputError, match="no errors"):
        tautology_check(x, y, y)
