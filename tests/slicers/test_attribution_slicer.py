"""The attribution slicer: k-means clusters that fail, honest tests, save/restore."""

from __future__ import annotations

import numpy as np
import pytest

from failscope._validation import InputError
from failscope.slicers import load_slicer, make_slicer
from failscope.slicers.attribution import AttributionSlicer


def blobs(seed: int = 0, n: int = 240):
    """Class 0: three blobs, the third wrong 80% of the time (5% elsewhere); class 1: one
    blob with 5% errors spread at random (one failure mode: none)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(4, 16)) * 4.0
    group = np.concatenate([rng.integers(0, 3, n), np.full(n, 3)])
    labels = np.repeat([0, 1], n)
    x = centres[group] + rng.normal(size=(2 * n, 16))
    wrong = rng.random(2 * n) < np.where(group == 2, 0.8, 0.05)
    pred = np.where(wrong, 1 - labels, labels)
    return x.astype(np.float32), labels, pred, group == 2


def test_finds_the_failing_cluster_and_nothing_in_a_class_without_one():
    x, y, pred, planted = blobs()
    s = AttributionSlicer(n_clusters=4).fit(x, y, pred, n_classes=2)
    assert [(f.class_index, f.rank) for f in s.slices_] == [(0, 0)]
    top = s.slices_[0]
    assert top.significant and top.support.p_value < 1e-10
    scores = s.score(x, y)
    member = top.members(scores[:, 0]) & (y == 0)
    assert np.array_equal(member, planted)  # exactly the failing blob
    assert np.isnan(scores[y == 1]).all()
    assert s.skip_reasons_ == {}  # class 1 was fitted and got no slice


def test_cluster_count_rule_and_determinism():
    x, y, pred, _ = blobs()
    s = AttributionSlicer(cluster_size=40).fit(x, y, pred)  # 240 examples / 40 -> 6 clusters
    assert s.slices_[0].metrics["n_clusters"] == 6.0
    assert AttributionSlicer(cluster_size=1000)._k(240) == 2  # at least 2
    assert AttributionSlicer(max_clusters=16)._k(100_000) == 16
    again = AttributionSlicer(cluster_size=40).fit(x, y, pred)
    np.testing.assert_array_equal(s.score(x, y), again.score(x, y))


def test_saved_slicer_scores_identically(tmp_path):
    x, y, pred, _ = blobs(seed=1)
    s = make_slicer("attribution:n_clusters=5,features=clip").fit(x, y, pred)
    s.save(tmp_path / "slicer.npz")
    back = load_slicer(tmp_path / "slicer.npz")
    assert isinstance(back, AttributionSlicer) and back.features == "clip"
    np.testing.assert_array_equal(back.score(x, y), s.score(x, y))
    assert [f.size for f in back.slices_] == [f.size for f in s.slices_]


def test_feature_kinds_and_parameters_are_checked():
    assert AttributionSlicer().feature_kind(("model", "clip")) == "model"
    assert AttributionSlicer().feature_kind(("clip",)) == "clip"
    with pytest.raises(InputError, match="model features need Grad-CAM"):
        AttributionSlicer(features="model").feature_kind(("clip",))
    with pytest.raises(InputError, match="features"):
        AttributionSlicer(features="pixels")._validate_params()
    with pytest.raises(InputError, match="max_clusters"):
        make_slicer("attribution:max_clusters=1")._validate_params()
