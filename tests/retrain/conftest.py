from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from synthetic import audited_head, make_problem, make_run


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def problem():
    return make_problem(seed=0)


@pytest.fixture(scope="session")
def synthetic_run(tmp_path_factory, problem):
    """A discover-style run on the synthetic problem, and its backbone features."""
    from failscope.retrain.features import BackboneFeatures

    path = make_run(tmp_path_factory.mktemp("run") / "run", problem, seed=0)
    w, b = audited_head(problem)
    feats = BackboneFeatures(problem["features"].astype(np.float32), w, b, "synthetic")
    return path, feats
