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
from failscope.retrain.crm import (
    CANDIDATES,
    CrmConfig,
    attribution_maps,
    pair_loss,
    perturb,
    regions,
    train_crm,
    transfer_colours,
)


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


def test_colour_transfer_takes_the_donors_colours_and_keeps_the_shapes():
    gen = torch.Generator().manual_seed(0)
    x = 0.2 + 0.1 * torch.rand(8, 3, 16, 16, generator=gen)
    x[:, 0] += 0.5  # every image reddish, a light background
    donors = 0.05 + 0.2 * torch.rand(8, 3, 16, 16, generator=gen)  # dark, grey
    y = transfer_colours(x, donors)
    assert torch.allclose(y.mean(dim=(2, 3)), donors.mean(dim=(2, 3)), atol=1e-4)
    assert torch.allclose(y.std(dim=(2, 3)), donors.std(dim=(2, 3)), atol=1e-4)
    pairs = zip(x.flatten(0, 1).flatten(1), y.flatten(0, 1).flatten(1), strict=True)
    corr = torch.stack([torch.corrcoef(torch.stack(ab))[0, 1] for ab in pairs])  # affine maps
    assert corr.min() > 0.9999
    bright = transfer_colours(torch.zeros(2, 3, 4, 4), torch.ones(2, 3, 4, 4))
    assert torch.equal(bright, torch.ones(2, 3, 4, 4))  # a flat image takes a flat colour


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


@pytest.fixture(scope="module")
def pink_run(tmp_path_factory):
    """A small world whose audited CNN learned that a pink background means 0."""
    from failscope import load_run
    from failscope.demo import run_demo

    tmp = tmp_path_factory.mktemp("pink")
    run_demo(out=tmp / "run", plants=["spurious:0:background=pink:0.95"], seed=0,
             sizes={"train": 1500, "val": 600, "test": 300}, cache_dir=tmp / "models",
             captions=False, retrain=False, report=False)  # fmt: skip
    run = load_run(tmp / "run")
    return run, run.slices_of(0)[0].id


def test_crm_auto_keeps_the_candidate_best_on_the_fitting_split(pink_run):
    from failscope.retrain.train import TrainConfig

    run, sid = pink_run
    ex = run.examples
    labels = ex["label"].to_numpy()
    train = np.flatnonzero(ex["split"].to_numpy() == "train")
    kw = {"labels": labels, "train_rows": train, "train_config": TrainConfig(seed=0)}
    model, info, images = train_crm(run, [sid], config=CrmConfig(epochs=2), **kw)
    checks = info["candidates"]
    assert list(checks) == list(CANDIDATES)
    audited = ex["correct"].to_numpy(bool)[ex["split"].to_numpy() == run.fit_split].mean()
    for c in checks.values():  # the mean of the slice's and the rest of its class's
        assert c["fit_balanced_accuracy"] == pytest.approx(
            (c["fit_slice_accuracy"] + c["fit_rest_of_class_accuracy"]) / 2, abs=1e-4
        )
    keep = [w for w in checks if checks[w]["fit_accuracy"] >= audited - 0.01] or ["none"]
    best = max(keep, key=lambda w: (checks[w]["fit_balanced_accuracy"], checks[w]["fit_accuracy"]))
    assert info["region"] == best
    assert len(images) == len(ex) and info["train_seconds"] > 0
    again = train_crm(run, [sid], config=CrmConfig(epochs=2, region=best), **kw)
    assert again[1]["candidates"] == {}  # one region given: nothing else is trained
    x = images[:64]
    with torch.inference_mode():
        assert torch.equal(model(x), again[0](x))  # the kept model is that region's, seeded
    for where in ("image", "attribution+image"):  # the colours: every pixel
        one = train_crm(run, [sid], config=CrmConfig(epochs=1, region=where), **kw)[1]
        assert one["region"] == where and one["region_share"] == 1.0


def test_cli_crm_options_reach_the_config(monkeypatch, synthetic_run):
    from failscope.retrain import pipeline
    from tests.bad_inputs.harness import run_cli

    seen = {}

    def fake_retrain_run(run, **kwargs):
        seen.update(kwargs)
        return {"status": "no-slices", "message": "stub"}

    monkeypatch.setattr(pipeline, "retrain_run", fake_retrain_run)
    path = synthetic_run[0]
    res = run_cli("retrain", path, "--crm-region", "background", "--crm-epochs", "2",
                  "--crm-perturbation", "blur", "--crm-consistency", "0")  # fmt: skip
    assert res.rc == 0, res.err
    crm = seen["crm"]
    assert (crm.region, crm.epochs, crm.perturbation) == ("background", 2, "blur")
    assert crm.consistency == 0.0
    bad = run_cli("retrain", path, "--crm-region", "glyph")
    assert bad.rc == 2 and "invalid choice: 'glyph'" in bad.err


def test_pair_loss_adds_the_jensen_shannon_divergence_of_each_pair():
    torch.manual_seed(0)
    logits, y = torch.randn(6, 4), torch.tensor([0, 3, 1])
    plain = torch.nn.functional.cross_entropy(logits, y.repeat(2))
    assert torch.allclose(pair_loss(logits, y, consistency=0.0), plain)
    p = torch.softmax(logits, dim=1).numpy().astype(np.float64).reshape(2, 3, 4)
    m = p.mean(axis=0)
    js = 0.5 * sum((q * np.log(q / m)).sum(axis=1).mean() for q in p)  # batch mean
    got = float(pair_loss(logits, y, consistency=2.0) - plain)
    assert got == pytest.approx(2.0 * js, rel=1e-4) and js > 0.01
    same = torch.cat([logits[:3], logits[:3]])  # identical predictions: no divergence
    assert torch.allclose(pair_loss(same, y, consistency=5.0),
                          torch.nn.functional.cross_entropy(same, y.repeat(2)))  # fmt: skip


def test_crm_config_rejects_a_negative_consistency():
    from failscope._validation import InputError

    with pytest.raises(InputError, match="consistency"):
        CrmConfig(consistency=-1.0)
