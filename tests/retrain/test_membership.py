"""Slice membership from discovered slices, columns and masks; upweighting weights."""

from __future__ import annotations

import numpy as np
import pytest

from failscope import InputError, load_run
from failscope.retrain.baselines import membership_balanced_weights, upweight_weights
from failscope.retrain.membership import (
    SliceSet,
    column_slices,
    discovered_slices,
    mask_slices,
    planted_slices,
)


def test_hard_membership_reproduces_discover_slices(synthetic_run):
    path, _ = synthetic_run
    run = load_run(path)
    ex = run.examples
    rows = np.arange(len(ex))
    s = discovered_slices(run, rows, mode="hard")
    ok = [e for e in run.slices if e.size > 0]
    assert s.names == tuple(e.id for e in ok)  # (class, rank) order, never re-sorted
    assert s.source == "discovered"
    flagged = s.hard().any(axis=1)
    np.testing.assert_array_equal(flagged, ex["slice"].to_numpy(bool))
    for k, c in enumerate(s.classes):  # slice k only holds class c
        assert set(ex["label"].to_numpy()[s.membership[:, k] > 0]) <= {c}


def test_soft_membership_is_calibrated_monotone_and_class_restricted(synthetic_run):
    path, _ = synthetic_run
    run = load_run(path)
    ex = run.examples
    rows = np.flatnonzero(ex["split"].to_numpy() == "train")
    soft = discovered_slices(run, rows, mode="soft")
    hard = discovered_slices(run, rows, mode="hard")
    assert soft.names == hard.names
    m = soft.membership
    assert m.min() >= 0 and m.max() <= 1
    labels = ex["label"].to_numpy()[rows]
    scores = ex["failure_score"].to_numpy()[rows]
    for k, c in enumerate(soft.classes):
        assert np.all(m[labels != c, k] == 0)
        sel = labels == c
        order = np.argsort(scores[sel])
        assert np.all(np.diff(m[sel, k][order]) >= -1e-6)  # monotone in the score
        # members of the hard slice get more soft membership than non-members
        in_hard = hard.membership[sel, k] > 0
        assert m[sel, k][in_hard].mean() > m[sel, k][~in_hard].mean()


def test_column_and_planted_slices_keep_column_order(synthetic_run):
    import pandas as pd

    path, _ = synthetic_run
    ex = load_run(path).examples
    p = planted_slices(ex)
    assert p.names == ("rare_zero",) and p.source == "planted" and p.classes == (0,)
    np.testing.assert_array_equal(p.membership[:, 0] > 0, ex["planted_rare_zero"].to_numpy())
    frame = pd.DataFrame({"label": [0, 1, 1], "zz": [True, False, True], "aa": [0, 1, 0]})
    s = column_slices(frame, ["zz", "aa"])
    assert s.names == ("zz", "aa")
    np.testing.assert_array_equal(s.membership, [[1, 0], [0, 1], [1, 0]])
    assert s.classes == (None, 1)
    with pytest.raises(InputError, match="not in examples"):
        column_slices(frame, ["nope"])
    with pytest.raises(InputError, match="must be boolean"):
        column_slices(frame.assign(bad=[0.5, 1, 0]), ["bad"])


def test_mask_slices_from_npy(tmp_path):
    mask = np.array([[1, 0], [0, 1], [1, 1]], dtype=bool)
    np.save(tmp_path / "m.npy", mask)
    s = mask_slices(tmp_path / "m.npy", n_examples=3)
    assert s.names == ("mask-0", "mask-1")
    np.testing.assert_array_equal(s.membership, mask.astype(np.float32))
    with pytest.raises(InputError, match="one row per row"):
        mask_slices(mask, n_examples=4)
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        mask_slices(np.array([0.5, 2.0, 0.0]), n_examples=3)


def test_sliceset_rejects_duplicate_names():
    with pytest.raises(InputError, match="unique"):
        SliceSet(("a", "a"), np.zeros((2, 2)), "mask")


def test_upweighting_variants_give_the_documented_weights():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 2])
    flagged = np.array([1, 0, 0, 0, 1, 1, 0, 0], dtype=bool)
    hard = upweight_weights("hard", flagged=flagged, labels=labels, factor=4.0)
    np.testing.assert_allclose(hard, [4, 1, 1, 1, 4, 4, 1, 1])
    bal = upweight_weights("balanced", flagged=flagged, labels=labels)
    # class 0: 4 examples, 1 flagged -> 4/2=2 and 4/6; class 1: 3 examples, 2 flagged
    # -> 3/4 and 3/2; class 2 has no flagged example -> 1
    np.testing.assert_allclose(bal, [2, 2 / 3, 2 / 3, 2 / 3, 0.75, 0.75, 1.5, 1], rtol=1e-6)
    for c in (0, 1):  # both groups carry half of the class's weight
        sel = labels == c
        assert bal[sel & flagged].sum() == pytest.approx(bal[sel & ~flagged].sum())
    margin = np.array([0.2, -1, -1, -1, 0.4, 0.6, -0.5, np.nan])
    soft = upweight_weights("soft", flagged=flagged, labels=labels, margin=margin, factor=5.0)
    scale = 0.4 / 4.0  # median flagged margin / (factor - 1)
    np.testing.assert_allclose(soft, 1 + np.maximum(np.nan_to_num(margin), 0) / scale, rtol=1e-6)
    assert soft[4] == pytest.approx(5.0)  # the median flagged example gets the hard weight
    explicit = upweight_weights("soft", flagged=flagged, labels=labels, margin=margin, scale=2.0)
    np.testing.assert_allclose(explicit[0], 1.1, rtol=1e-6)
    with pytest.raises(InputError, match="margins"):
        upweight_weights("soft", flagged=flagged, labels=labels)
    with pytest.raises(InputError, match="variant"):
        upweight_weights("heavy", flagged=flagged, labels=labels)


def test_membership_balanced_weights_generalise_the_balanced_rule():
    labels = np.array([0] * 6 + [1] * 4 + [2] * 3)
    flags = np.array([1, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0], dtype=bool)
    np.testing.assert_allclose(
        membership_balanced_weights(flags.astype(float), labels=labels),
        upweight_weights("balanced", flagged=flags, labels=labels),
    )
    soft = np.array([0.9, 0.5, 0.1, 0.1, 0.0, 0.0, 0.2, 0.2, 0.2, 0.2, 0.0, 0.0, 0.0])
    w = membership_balanced_weights(soft, labels=labels)
    for c in (0, 1):  # a class keeps its total weight
        sel = labels == c
        assert w[sel].sum() == pytest.approx(sel.sum(), rel=1e-6)
    assert np.all(np.diff(w[:4]) <= 0)  # more membership, more weight
    np.testing.assert_allclose(w[labels == 2], 1.0)  # no member: weights unchanged
