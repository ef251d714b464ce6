"""Reading a run: typed fields, slice scores, the format-1 refusal, ownership of files."""

from __future__ import annotations

import numpy as np
import pytest
from runbuilder import build_run, planted_world

from failscope import InputError, load_run
from failscope.run import EXAMPLE_COLUMNS, write_json


@pytest.fixture
def run(tmp_path):
    w = planted_world(seed=1)
    return build_run(
        tmp_path / "run", class_names=["ant", "bee", "cat"], metadata={"planted": w["planted"]},
        **{k: w[k] for k in ("embeddings", "labels", "predictions", "splits")},
    )  # fmt: skip


def test_typed_fields(run):
    assert run.class_names == ["ant", "bee", "cat"]
    assert run.fit_split == "val" and run.config.fit_split == "val"
    assert run.info.n_scored == len(run.examples) == 360
    assert [c.class_name for c in run.classes] == ["ant", "bee", "cat"]
    assert [s.id for s in run.slices] == ["0/0", "1/0", "2/0"]
    assert run.slice("1/0").class_name == "bee"
    with pytest.raises(InputError, match="no slice '7/0'"):
        run.slice("7/0")
    assert tuple(run.examples.columns[: len(EXAMPLE_COLUMNS)]) == EXAMPLE_COLUMNS


def test_slice_scores_frame_is_nan_outside_the_class(run):
    frame = run.slice_scores()
    ex = run.examples
    assert list(frame.columns) == ["0/0", "1/0", "2/0"]
    assert frame.index.name == "id" and (frame.index == ex["id"]).all()
    for c, col in enumerate(frame.columns):
        inside = (ex["label"] == c).to_numpy()
        assert frame[col][~inside].isna().all()
        assert np.isfinite(frame[col][inside]).all()
    # the top slice's column is examples.parquet's failure_score
    top = frame.to_numpy()[np.arange(len(ex)), ex["label"].to_numpy()]
    np.testing.assert_array_equal(top, ex["failure_score"].to_numpy())


def test_members_and_slice_id_follow_the_rule(run):
    ex = run.examples
    for s in run.slices:
        members = run.members(s)
        np.testing.assert_array_equal(members, (ex["slice_id"] == s.id).fillna(False).to_numpy())
        fit = (ex["split"] == run.fit_split).to_numpy()
        assert members[fit].sum() == s.size
        assert (members & ~ex["correct"].to_numpy())[fit].sum() == s.n_errors_in
    assert (ex["slice"] == ex["slice_id"].notna()).all()  # one slice per class here


def test_format_1_runs_are_refused_with_how_to_rebuild(tmp_path):
    write_json(tmp_path / "run.json", {"format": 1, "classes": ["a"]})
    with pytest.raises(InputError, match=r"run format 1 .* re-run `failscope discover`"):
        load_run(tmp_path)


def test_malformed_run_json_names_the_key(run):
    import json

    p = run.path / "run.json"
    data = json.loads(p.read_text())
    data["n_scored"] = "many"
    p.write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"run\.json\.n_scored must be an integer"):
        load_run(run.path)


def test_later_stages_never_overwrite_foreign_files(run):
    (run.path / "notes.json").write_text("mine")
    with pytest.raises(InputError, match="failscope did not write it"):
        run.output("notes.json")
    assert run.output("evaluation.json") == run.path / "evaluation.json"  # free: fine
    (run.path / "evaluation.json").write_text("{}")
    run.add_files("evaluation.json")
    assert run.owns("evaluation.json") and load_run(run.path).owns("evaluation.json")
    assert run.output("evaluation.json").name == "evaluation.json"
