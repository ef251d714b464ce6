"""The slicer registry: names, specs, user slicers, and the directions slicer's contract."""

from __future__ import annotations

import numpy as np
import pytest
from runbuilder import planted_world

from failscope import ErrorDirections, InputError
from failscope.slicers import (
    Slicer,
    add_slicer,
    list_slicers,
    load_slicer,
    make_slicer,
    parse_slicer_spec,
)
from failscope.slicers.directions import DirectionSlicer


def test_specs_are_parsed_and_typed():
    assert parse_slicer_spec("directions") == ("directions", {})
    name, params = parse_slicer_spec("directions:cv=3,alpha=0.01,threshold=topk:5")
    assert name == "directions" and params == {"cv": 3, "alpha": 0.01, "threshold": "topk:5"}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nope", "unknown slicer 'nope'; known: attribution, directions"),
        ("directions:foo=1", "'foo=1' is not one of directions's"),
        ("directions:cv=two", "value 'two' should be like 2"),
        ("directions:cv", "'cv' is not one of"),
    ],
)
def test_bad_specs_name_the_problem(spec, message):
    with pytest.raises(InputError, match=message):
        parse_slicer_spec(spec)


def test_make_slicer_fills_shared_defaults_and_spec_wins():
    s = make_slicer("directions:cv=3", cv=5, alpha=0.01, not_a_param=1)
    assert isinstance(s, DirectionSlicer) and s.cv == 3 and s.alpha == 0.01


def test_users_can_add_a_slicer():
    class Mine(DirectionSlicer):
        name = "mine"

    add_slicer("mine", Mine)
    assert "mine" in list_slicers()
    assert isinstance(make_slicer("mine"), Mine)
    with pytest.raises(TypeError, match="must subclass"):
        add_slicer("bad", dict)  # type: ignore[arg-type]
    assert issubclass(Mine, Slicer)


def _fit_data():
    w = planted_world(seed=3, n_per_class=150)
    fit = w["splits"] == "val"
    ref = w["splits"] == "train"
    return w, fit, ref


def test_directions_slicer_reproduces_error_directions_exactly():
    w, fit, ref = _fit_data()
    x, y, p = w["embeddings"], w["labels"], w["predictions"]
    slicer = DirectionSlicer(max_slices=1, random_state=0)
    slicer.fit(x[fit], y[fit], p[fit], reference=x[ref])
    est = ErrorDirections(random_state=0).fit(x[fit], y[fit], p[fit], reference=x[ref])
    np.testing.assert_array_equal(slicer.score(x, y)[:, 0], est.failure_score(x, y))
    np.testing.assert_array_equal(slicer.estimator_.directions_, est.directions_)
    for s in slicer.slices_:
        sel = fit & (y == s.class_index)
        scores = est.failure_score(x[sel], y[sel])
        assert s.size == int((scores > 0).sum()) and s.rank == 0 and s.strict
        assert s.n_errors_in == int(((scores > 0) & (p[sel] != y[sel])).sum())
        assert s.support.cv_score == pytest.approx(est.cv_scores_[s.class_index])
        np.testing.assert_array_equal(s.direction, est.directions_[s.class_index])


def test_saved_slicer_scores_identically(tmp_path):
    w, fit, _ = _fit_data()
    x, y, p = w["embeddings"], w["labels"], w["predictions"]
    slicer = make_slicer("directions:threshold=topk:20,max_slices=1").fit(x[fit], y[fit], p[fit])
    slicer.save(tmp_path / "s.npz")
    back = load_slicer(tmp_path / "s.npz")
    np.testing.assert_array_equal(back.score(x, y), slicer.score(x, y))
    assert [(s.class_index, s.size, s.cutoff) for s in back.slices_] == [
        (s.class_index, s.size, s.cutoff) for s in slicer.slices_
    ]
    assert all(s.size == 20 for s in slicer.slices_)
