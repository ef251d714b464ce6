"""The pieces of the spurious fix: attribution regions, perturbation, backbone training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from failscope.retrain.backbone import (
    ImageTrainConfig,
    as_classifier,
    reinitialize,
    train_on_images,
)
from failscope.retrain.crm import CrmConfig, attribution_maps, choose_region, perturb, regions


class LeftNet(torch.nn.Module):
    """Class 1 iff the left half is bright: it only looks at the left half."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4, 2)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x[..., : x.shape[-1] // 2])).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def test_attribution_regions_are_where_the_model_looks():
    torch.manual_seed(0)
    model = LeftNet()
    x = torch.rand(8, 3, 16, 16)
    maps = attribution_maps(model, x, 1, smooth=3)
    assert maps.shape == (8, 16, 16) and maps.dtype == np.float16
    assert float(maps[..., 9:].max()) == 0.0 and float(maps[..., :8].mean()) >= 0.2
    region = regions(maps, 0.6)
    assert region[..., :7].mean() > 0.6 and region[..., 9:].mean() == 0.0


@pytest.mark.parametrize("kind", ["noise", "blur"])
def test_perturb_changes_the_region_only(kind):
    x = torch.rand(4, 3, 16, 16)
    mask = torch.zeros(4, 16, 16, dtype=torch.bool)
    mask[:, 4:12, 4:12] = True
    cfg = CrmConfig(perturbation=kind)
    y = perturb(x.clone(), mask, config=cfg, generator=torch.Generator().manual_seed(0))
    outside = ~mask[:, None].expand_as(x)
    assert torch.equal(y[outside], x[outside])
    assert (y - x)[~outside].abs().mean() > 0.02 and y.min() >= 0 and y.max() <= 1
    again = perturb(x.clone(), mask, config=cfg, generator=torch.Generator().manual_seed(0))
    assert torch.equal(y, again)  # seeded


def test_colour_noise_hides_the_region_mean_colour():
    x = torch.zeros(256, 3, 8, 8)
    x[:, 0] = 0.9  # every image red
    mask = torch.ones(256, 8, 8, dtype=torch.bool)
    gen = torch.Generator().manual_seed(1)

    def red_share(cfg: CrmConfig) -> float:
        y = perturb(x, mask, config=cfg, generator=gen)
        return float((y[:, 0].mean(dim=(1, 2)) > y[:, 1:].mean(dim=(1, 2, 3))).float().mean())

    assert red_share(CrmConfig(recolor=False, noise_std=0.3)) == 1.0  # still red
    assert 0.3 < red_share(CrmConfig()) < 0.65  # red in about half of the images
    y = perturb(x, mask, config=CrmConfig(noise_std=0.0), generator=gen).mean(dim=(2, 3))
    yellow = (y[:, 0] > 0.5) & (y[:, 1] > 0.5) & (y[:, 2] < 0.3)
    assert float(yellow.float().mean()) > 0.05  # any colour, not only red, green or blue


def test_reinitialize_and_train_on_images():
    torch.manual_seed(0)
    model = LeftNet()
    before = [p.detach().clone() for p in model.parameters()]
    reinitialize(model, seed=3)
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    clf = as_classifier(model, 2, seed=0)
    x = torch.rand(256, 3, 16, 16)
    y = (x[:, :, :, :8].mean(dim=(1, 2, 3)) > 0.5).long().numpy()
    losses = train_on_images(clf, x, y, config=ImageTrainConfig(epochs=8, lr=1e-2), seed=0)
    assert losses[-1] < losses[0]
    with pytest.raises(ValueError, match="no final linear layer"):
        as_classifier(torch.nn.Conv2d(3, 2, 1), 2, seed=0)


def test_crm_config_is_checked():
    for bad in ({"perturbation": "erase"}, {"epochs": 0}, {"region_quantile": 1.5},
                {"noise_std": -1.0}, {"region": "left"}):  # fmt: skip
        with pytest.raises(ValueError):
            CrmConfig(**bad)


class CueNet(torch.nn.Module):
    """Class 1 from a colour cue (red minus green in the left half), class 0 from the
    brightness of the right half."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        red = (x[:, 0] - x[:, 1])[..., :half].mean(dim=(1, 2))
        bright = x.amax(dim=1)[..., half:].mean(dim=(1, 2))
        return torch.stack([10 * (bright - 0.5), 10 * red], dim=1)


class _Fn(torch.nn.Module):
    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def _cue_images(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    red = torch.zeros(n, 3, 16, 16)
    red[:, 0, :, :8] = 0.9  # class 1: red left half, dark right half
    red[:, :, :, 8:] = 0.1
    grey = torch.full((n, 3, 16, 16), 0.5)  # class 0: grey left half, bright right half
    grey[:, :, :, 8:] = 0.9
    return red, grey


def test_choose_region_finds_the_cue_or_none():
    red, grey = _cue_images(64)
    cfg = CrmConfig(region_quantile=0.4, noise_std=0.0)
    zeros = np.zeros(len(grey), dtype=np.int64)
    where, scores = choose_region(CueNet(), red, grey, zeros, 1, config=cfg, seed=0)
    assert where == "attribution" and scores["attribution"] > 0.1 >= scores["background"]
    again = choose_region(CueNet(), red, grey, zeros, 1, config=cfg, seed=0)
    assert again == (where, scores)  # seeded

    # a model of brightness alone: recolouring (brightness kept) moves nothing -> none
    def bright(x: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.zeros(len(x)), 10 * x.amax(dim=1).mean(dim=(1, 2))], 1)

    where, scores = choose_region(_Fn(bright), red, grey, zeros, 1, config=cfg, seed=0)
    assert where == "none" and scores == {"attribution": 0.0, "background": 0.0}


def test_cli_crm_options_reach_the_config(monkeypatch, synthetic_run):
    from failscope.retrain import pipeline
    from tests.bad_inputs.harness import run_cli

    seen = {}

    def fake_retrain_run(run, **kwargs):
        seen.update(kwargs)
        return {"status": "no-slices", "message": "stub"}

    monkeypatch.setattr(pipeline, "retrain_run", fake_retrain_run)
    path = synthetic_run[0]
    res = run_cli("retrain", path, "--crm-region", "background",
                  "--crm-epochs", "2", "--crm-perturbation", "blur")  # fmt: skip
    assert res.rc == 0, res.err
    crm = seen["crm"]
    assert (crm.region, crm.epochs, crm.perturbation) == ("background", 2, "blur")
    bad = run_cli("retrain", path, "--crm-region", "glyph")
    assert bad.rc == 2 and "invalid choice: 'glyph'" in bad.err
