"""Engine options: validated at the door; ``--engine ray`` without Ray, or without a cluster."""

from __future__ import annotations

import sys

import pytest

from failscope import InputError
from failscope.engines import EngineOptions
from failscope.engines.ray_data import RayNotInstalled, _ray_session


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"engine": "spark"}, r"engine='spark' is not one of \{'local', 'ray'\}"),
        ({"ray_actors": 0}, r"ray_actors=0 must be >= 1"),
        ({"ray_gpus_per_actor": -1.0}, r"ray_gpus_per_actor=-1.0 must be >= 0"),
        ({"ray_gpus_per_actor": float("nan")}, r"ray_gpus_per_actor must be a number >= 0"),
        ({"ray_address": " "}, r"ray_address is empty"),
    ],
)
def test_bad_options_fail_with_one_line(kwargs, message):
    with pytest.raises(InputError, match=message):
        EngineOptions(**kwargs)


def test_options_are_recorded_as_given():
    opts = EngineOptions(engine="ray", ray_address="auto", ray_actors=4, ray_gpus_per_actor=0.5)
    assert opts.to_json() == {
        "engine": "ray", "ray_address": "auto", "ray_actors": 4, "ray_gpus_per_actor": 0.5,
    }  # fmt: skip


@pytest.mark.ray
def test_no_cluster_to_join_is_a_one_line_error(monkeypatch):
    import ray

    def refuse(**kwargs):
        assert kwargs["address"] == "auto"
        raise ConnectionError("Could not find any running Ray instance.")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)
    with pytest.raises(InputError) as err, _ray_session("auto"):
        pass
    assert str(err.value) == (
        "cannot reach the Ray cluster at --ray-address auto (Could not find any running Ray "
        "instance.); start one with `ray start --head`, or leave out --ray-address for a "
        "local Ray instance"
    )


def test_without_ray_the_engine_says_what_to_install(
    image_dataset, tmp_path, monkeypatch, capsys, cli
):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(RayNotInstalled) as err:
        EngineOptions(engine="ray")
    assert isinstance(err.value, ImportError) and isinstance(err.value, InputError)
    assert "pip install 'failscope[ray]'" in str(err.value)
    assert EngineOptions(engine="local").engine == "local"  # the local engine needs no Ray
    rc = cli([
        "discover", "--data", str(image_dataset.manifest), "--model", "model.pt",
        "--engine", "ray", "--out", str(tmp_path / "run"),
    ])  # fmt: skip
    lines = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(lines) == 1, lines
    assert lines[0] == (
        "failscope discover: error: --engine ray (engine='ray') needs Ray Data, which is "
        "not installed: pip install 'failscope[ray]'"
    )
