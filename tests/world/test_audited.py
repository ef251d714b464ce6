"""The audited model fails inside every default planted slice."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from failscope.world import DEFAULT_PLANTS, make_world
from failscope.world.audited import (
    AuditedConfig,
    evaluate_slices,
    get_audited_model,
    load_audited_model,
    predict_logits,
)


@pytest.mark.slow
def test_audited_model_fails_on_planted_slices(tmp_path):
    world = make_world(DEFAULT_PLANTS, seed=0, root=tmp_path / "world")
    path, model = get_audited_model(world, config=AuditedConfig(seed=0))
    result = evaluate_slices(model, world, split="test")
    assert result["overall"] > 0.7
    assert len(result["slices"]) == 2
    for name, s in result["slices"].items():
        assert s["n"] >= 25, name
        assert s["gap"] >= 0.15, (name, s, result["overall"])

    # TorchScript: logits from [0, 1] floats, penultimate features, final linear layer.
    loaded = load_audited_model(path)
    x = torch.rand(4, 3, 32, 32)
    feats = loaded.features(x)
    assert feats.shape == (4, loaded.fc.in_features)
    torch.testing.assert_close(loaded.fc(feats), loaded(x))
    images = world.split_images("val")[:64]
    np.testing.assert_allclose(
        predict_logits(loaded, images), predict_logits(model, images), atol=1e-5
    )

    # A second call loads the cached file instead of training.
    again, _ = get_audited_model(world, config=AuditedConfig(seed=0))
    assert again == path
    assert len(list(path.parent.glob("audited-*.pt"))) == 1
