"""A demo stopped after writing its world, before discover, can be re-run in place."""

from __future__ import annotations

import json

import pytest

from failscope._validation import InputError
from failscope.demo import _only_an_unfinished_world
from failscope.run.writer import check_output_dir


def _world_only(out, meta):
    (out / "world" / "images").mkdir(parents=True)
    (out / "world" / "world.json").write_text(json.dumps(meta), encoding="utf-8")


def test_a_world_without_a_run_is_an_unfinished_demo(tmp_path):
    out = tmp_path / "demo"
    _world_only(out, {"format": 1, "key": "05497818b211c779"})
    (out / ".failscope.lock").touch()
    assert _only_an_unfinished_world(out)
    with pytest.raises(InputError, match="holds no failscope run"):
        check_output_dir(out, data_root=None, force=False)  # discover alone still refuses


@pytest.mark.parametrize("case", ["other file", "no world.json", "not a world", "empty"])
def test_anything_else_is_not(tmp_path, case):
    out = tmp_path / "demo"
    out.mkdir()
    if case == "other file":
        _world_only(out, {"key": "05497818b211c779"})
        (out / "notes.txt").write_text("mine")
    elif case == "no world.json":
        (out / "world").mkdir()
    elif case == "not a world":
        _world_only(out, ["a", "list"])
    assert not _only_an_unfinished_world(out)
