"""Slice thresholds and per-class slice summaries."""

from __future__ import annotations

import numpy as np
import pytest

from failscope import ErrorDirections, InputError, SliceThreshold
from failscope.slices import assign_slices, summarize_slices


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("zero", SliceThreshold("zero", 0.0)),
        ("0", SliceThreshold("zero", 0.0)),
        ("quantile:0.9", SliceThreshold("quantile", 0.9)),
        ("q:0.5", SliceThreshold("quantile", 0.5)),
        ("topk:25", SliceThreshold("topk", 25.0)),
    ],
)
def test_parse(spec, expected):
    assert SliceThreshold.parse(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [("half", "not understood"), ("quantile:1.5", r"must lie in \(0, 1\)"), ("topk:0", ">= 1")],
)
def test_parse_errors(spec, message):
    with pytest.raises(InputError, match=message):
        SliceThreshold.parse(spec)


def test_assign_zero_quantile_topk():
    labels = np.array([0] * 10 + [1] * 10)
    scores = np.concatenate([np.linspace(-1, 1, 10), np.linspace(-2, 0.5, 10)]).astype(np.float32)
    fit = np.ones(20, bool)
    s0, cut0 = assign_slices(scores, labels, fit, 2)
    assert (s0 == (scores > 0)).all() and (cut0 == 0).all()
    s1, _ = assign_slices(scores, labels, fit, 2, SliceThreshold("topk", 3))
    assert s1[:10].sum() == 3 and s1[10:].sum() == 3 and s1[7:10].all()
    s2, _ = assign_slices(scores, labels, fit, 2, SliceThreshold("quantile", 0.8))
    assert s2[:10].sum() == 2


def test_cutoffs_come_from_fitting_split_only():
    labels = np.zeros(6, int)
    scores = np.array([0.1, 0.2, 0.3, 5.0, 6.0, 7.0], np.float32)
    fit = np.array([True, True, True, False, False, False])
    in_slice, cut = assign_slices(scores, labels, fit, 1, SliceThreshold("topk", 1))
    assert cut[0] == pytest.approx(0.3)
    assert in_slice.tolist() == [False, False, True, True, True, True]


def test_nan_scores_never_in_slice():
    scores = np.array([np.nan, 1.0], np.float32)
    in_slice, _ = assign_slices(scores, np.array([0, 0]), np.ones(2, bool), 1)
    assert in_slice.tolist() == [False, True]


def test_summary_error_rates_inside_vs_outside():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 8)).astype(np.float32)
    y = np.repeat([0, 1], 200)
    wrong = x[:, 0] > 0.8
    wrong[y == 1] = False  # class 1: no errors, skipped
    pred = np.where(wrong, 1 - y, y)
    est = ErrorDirections().fit(x, y, pred)
    scores = est.failure_score(x, y)
    fit = np.ones(len(y), bool)
    in_slice, cut = assign_slices(scores, y, fit, 2)
    rows = summarize_slices(
        est, labels=y, correct=~wrong, in_slice=in_slice, fit_mask=fit, cutoffs=cut,
        threshold=SliceThreshold(), class_names=["a", "b"],
    )  # fmt: skip
    a, b = rows
    assert a["status"] == "ok" and a["size"] == int(in_slice[y == 0].sum())
    assert a["error_rate_in"] > 0.5 > a["error_rate_out"]
    assert a["n_fit"] == 200 and a["n_errors_fit"] == int(wrong[y == 0].sum())
    assert b["status"] == "skipped" and "no errors" in b["reason"] and b["cv_score"] is None
