"""Slice thresholds, membership rules and each example's top slice."""

from __future__ import annotations

import numpy as np
import pytest

from failscope import InputError, SliceThreshold
from failscope.run.schema import MembershipRule, SliceEntry, Support
from failscope.slices import slice_id, top_membership


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


def _entry(c: int, rank: int, cutoff: float, strict: bool = True) -> SliceEntry:
    return SliceEntry(
        id=slice_id(c, rank), class_index=c, class_name=str(c), rank=rank, slicer="t",
        status="ok", column=rank, size=0, n_errors_in=0, error_rate_in=None,
        error_rate_out=None, support=Support(test="t", p_value=0.01, alpha=0.05),
        rule=MembershipRule(score="s", cutoff=cutoff, strict=strict, threshold="zero"),
        confusion={},
    )  # fmt: skip


def test_cutoff_zero_quantile_topk():
    s = np.linspace(-1, 1, 10).astype(np.float32)
    assert SliceThreshold().cutoff(s) == 0.0
    assert SliceThreshold("topk", 3).cutoff(s) == pytest.approx(s[-3])
    assert SliceThreshold("quantile", 0.8).cutoff(s) == pytest.approx(np.quantile(s, 0.8))
    assert SliceThreshold("topk", 3).cutoff(np.array([np.nan])) == np.inf
    assert str(SliceThreshold("topk", 3)) == "topk:3" and str(SliceThreshold()) == "zero"


def test_top_membership_takes_the_highest_ranked_slice():
    labels = np.array([0, 0, 0, 1, 1])
    scores = np.array(
        [[1.0, 1.0], [-1.0, 2.0], [-1.0, -1.0], [0.5, np.nan], [0.0, np.nan]], np.float32
    )
    slices = (_entry(0, 0, 0.0), _entry(0, 1, 0.0), _entry(1, 0, 0.0, strict=False))
    in_top, ids = top_membership(scores, labels, slices)
    assert in_top.tolist() == [True, False, False, True, True]
    assert ids.tolist() == ["0/0", "0/1", None, "1/0", "1/0"]  # strict vs >= at the cutoff


def test_nan_scores_are_never_members():
    rule = MembershipRule(score="s", cutoff=-10.0, strict=False, threshold="zero")
    assert rule.passes(np.array([np.nan, 0.0])).tolist() == [False, True]
