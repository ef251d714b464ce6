"""One config for discover: the CLI, the API, run.json and the README read the same fields."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import pytest

from failscope.cli import build_parser
from failscope.cli._config import flag_of
from failscope.run.config import DiscoverConfig, options_markdown

README = Path(__file__).resolve().parents[2] / "README.md"


def _discover_parser():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sub.choices["discover"]


def test_every_field_is_an_option_with_the_same_default():
    actions = {a.dest: a for a in _discover_parser()._actions}
    for f in dataclasses.fields(DiscoverConfig):
        action = actions[f.name]
        assert flag_of(f) in action.option_strings
        if f.name != "data":
            assert action.default == f.default, f.name
    extra = set(actions) - {f.name for f in dataclasses.fields(DiscoverConfig)}
    assert extra == {"help", "out", "json", "quiet", "verbose"}


def test_cli_arguments_build_the_config():
    from failscope.cli._config import config_from_args

    args = _discover_parser().parse_args(
        ["--data", "d.csv", "--out", "r", "--predictions", "p.npy", "--slicer", "mixture",
         "--C-grid", "0.1,1", "--no-report", "--threads", "2"]
    )  # fmt: skip
    cfg = config_from_args(DiscoverConfig, args)
    assert cfg == DiscoverConfig(
        data="d.csv", predictions="p.npy", slicer="mixture", Cs=(0.1, 1.0), report=False,
        threads=2,
    )  # fmt: skip
    assert DiscoverConfig.from_json(cfg.to_json(), where="x") == cfg


def test_discover_takes_the_same_names():
    from failscope.pipeline import discover

    assert "config" in inspect.signature(discover).parameters
    with pytest.raises(TypeError, match="unknown setting 'thresh'"):
        discover("d.csv", out="r", thresh="zero")


def test_readme_lists_every_option_as_the_config_says():
    assert options_markdown() in README.read_text(encoding="utf-8")
