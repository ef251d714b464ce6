"""SliceAwareClassifier: shapes, masking, gradients, slice order, empty slices."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from failscope import InputError
from failscope.retrain.sbl import LinearHead, SliceAwareClassifier, masked_mean


def _model(attention="sbl", names=("a", "b", "c"), **kw):
    torch.manual_seed(0)
    return SliceAwareClassifier(
        in_features=8, n_classes=5, slice_names=names, expert_dim=6, attention=attention, **kw
    )


@pytest.mark.parametrize("attention", ["sbl", "moa"])
@pytest.mark.parametrize("tie", [False, True])
@pytest.mark.parametrize("indicator_input", ["features", "expert"])
def test_shapes_and_attention_rows_sum_to_one(attention, tie, indicator_input):
    model = _model(attention, tie_master=tie, indicator_input=indicator_input)
    out = model.forward_features(torch.randn(7, 8))
    assert out["logits"].shape == (7, 5)
    assert out["indicator_logits"].shape == (7, 4)
    assert out["slice_logits"].shape == (7, 4, 5)
    assert out["experts"].shape == (7, 4, 6)
    assert out["attention"].shape == (7, 4)
    torch.testing.assert_close(out["attention"].sum(dim=1), torch.ones(7))
    assert model(torch.randn(3, 8)).shape == (3, 5)
    if attention == "moa":
        torch.testing.assert_close(out["attention_dot"].sum(dim=1), torch.ones(7))
        lam = torch.sigmoid(model.mix_logit)
        expected = (1 - lam) * out["attention_sbl"] + lam * out["attention_dot"]
        torch.testing.assert_close(out["attention"], expected)


@pytest.mark.parametrize(("indicator_input", "ind"), [("features", 8 + 1), ("expert", 6 + 1)])
def test_parameters_per_slice_matches_the_actual_overhead(indicator_input, ind):
    small = _model(names=("a",), indicator_input=indicator_input)
    big = _model(names=("a", "b", "c"), indicator_input=indicator_input)
    per = (big.head_parameter_count() - small.head_parameter_count()) / 2
    assert per == big.parameters_per_slice == 8 * 6 + 6 + ind


@pytest.mark.parametrize("indicator_input", ["features", "expert"])
def test_non_members_get_exactly_zero_gradient_from_a_slice_predictor(indicator_input):
    model = _model(indicator_input=indicator_input)
    x = torch.randn(6, 8, requires_grad=True)
    out = model.forward_features(x)
    out["experts"].retain_grad()
    y = torch.randint(0, 5, (6,))
    member = torch.tensor([1, 0, 1, 0, 0, 1], dtype=torch.float32)
    m = torch.zeros(6, 3)
    m[:, 1] = member  # slice "b" is expert 2
    parts = model.loss(out, y, m)
    parts["predictor_per_slice"][2].backward()
    g_rep = out["experts"].grad[:, 2, :]
    assert torch.all(g_rep[member == 0] == 0)  # exactly zero, not merely small
    assert torch.all(g_rep[member == 1].abs().sum(dim=1) > 0)
    assert torch.all(x.grad[member == 0] == 0)
    assert torch.all(x.grad[member == 1].abs().sum(dim=1) > 0)
    # other experts get nothing from slice b's predictor loss
    assert torch.all(out["experts"].grad[:, [0, 1, 3], :] == 0)


def test_slice_with_no_members_in_batch_contributes_exactly_zero():
    model = _model()
    x = torch.randn(5, 8)
    y = torch.randint(0, 5, (5,))
    m = torch.zeros(5, 3)
    m[:2, 0] = 1.0
    out = model.forward_features(x)
    parts = model.loss(out, y, m)
    per = parts["predictor_per_slice"]
    assert per[2].item() == 0.0 and per[3].item() == 0.0
    assert per[0].item() > 0 and per[1].item() > 0
    assert all(math.isfinite(v.item()) for k, v in parts.items() if v.ndim == 0)
    parts["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_masked_mean_is_a_weighted_mean_and_zero_for_empty_columns():
    v = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    w = torch.tensor([[1.0, 0.0], [3.0, 0.0]])
    torch.testing.assert_close(masked_mean(v, w), torch.tensor([2.5, 0.0]))


@pytest.mark.parametrize("indicator_input", ["features", "expert"])
def test_indicator_k_is_trained_on_membership_column_k_whatever_the_names(indicator_input):
    """Names that sort in the opposite order must not swap indicators and experts."""
    from failscope.retrain.train import TrainConfig, fit_head

    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 8)).astype(np.float32)
    y = rng.integers(0, 5, 600)
    m = np.stack([x[:, 0] > 0.5, x[:, 1] > 0.5], axis=1).astype(np.float32)
    torch.manual_seed(0)
    model = SliceAwareClassifier(
        in_features=8, n_classes=5, slice_names=["zeta", "alpha"], expert_dim=6,
        indicator_input=indicator_input,
    )  # fmt: skip
    assert model.all_slice_names == ("base", "zeta", "alpha")
    fit_head(model, x, y, membership=m, config=TrainConfig(epochs=300, lr=3e-2, batch_size=0))
    with torch.no_grad():
        p = torch.sigmoid(model.forward_features(torch.from_numpy(x))["indicator_logits"])
    for k in range(2):
        in_k = m[:, k] == 1
        assert p[in_k, k + 1].mean() > p[~in_k, k + 1].mean() + 0.3  # its own column
        other = m[:, 1 - k] == 1
        assert abs(p[other, k + 1].mean() - p[~other, k + 1].mean()) < 0.2  # not the other


def test_bad_arguments_raise_one_line_errors():
    with pytest.raises(InputError, match="unique"):
        SliceAwareClassifier(in_features=4, n_classes=3, slice_names=["a", "a"])
    with pytest.raises(InputError, match="confidence"):
        SliceAwareClassifier(in_features=4, n_classes=3, confidence="margin")
    with pytest.raises(InputError, match="temperature"):
        SliceAwareClassifier(in_features=4, n_classes=3, temperature=0)
    model = _model()
    out = model.forward_features(torch.randn(2, 8))
    with pytest.raises(InputError, match="membership has shape"):
        model.loss(out, torch.zeros(2, dtype=torch.long), torch.zeros(2, 2))


@pytest.mark.parametrize("confidence", ["max_prob", "entropy"])
def test_confidence_lies_in_unit_interval(confidence):
    model = _model(confidence=confidence)
    c = model._confidence(torch.randn(10, 5) * 5)
    assert torch.all((c >= 0) & (c <= 1 + 1e-6))
    uniform = model._confidence(torch.zeros(1, 5))
    assert uniform.item() == pytest.approx(0.2 if confidence == "max_prob" else 0.0, abs=1e-6)


def test_balance_indicators_weights_rare_slices():
    model = _model(names=("a", "b"))
    m = torch.zeros(100, 2)
    m[:10, 0] = 1
    model.balance_indicators(m)
    torch.testing.assert_close(model.indicator_pos_weight, torch.tensor([1.0, 9.0, 1.0]))


def test_linear_head_can_start_from_the_audited_layer():
    head = LinearHead(in_features=4, n_classes=3)
    w, b = torch.randn(3, 4), torch.randn(3)
    head.init_from(w, b)
    x = torch.randn(5, 4)
    torch.testing.assert_close(head(x), x @ w.T + b)


class _Backbone(torch.nn.Module):
    """A tiny backbone with a ``features`` method and a final ``fc``, like the world's CNN."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Linear(10, 8)
        self.fc = torch.nn.Linear(8, 5)

    def features(self, x):
        return torch.relu(self.body(x))

    def forward(self, x):
        return self.fc(self.features(x))


@pytest.mark.parametrize("frozen", [True, False])
def test_backbone_is_frozen_or_fine_tuned_and_round_trips(frozen, tmp_path):
    from failscope.retrain.checkpoint import load_retrained, save_retrained
    from failscope.retrain.train import TrainConfig, fit_head

    torch.manual_seed(0)
    bb = _Backbone()
    before = bb.body.weight.detach().clone()
    model = SliceAwareClassifier(
        in_features=8, n_classes=5, slice_names=["a"], expert_dim=4, backbone=bb,
        freeze_backbone=frozen,
    )  # fmt: skip
    x = torch.randn(64, 10)
    y = torch.randint(0, 5, (64,))
    m = (torch.rand(64, 1) < 0.3).float()
    fit_head(model, x, y, membership=m, config=TrainConfig(epochs=3), on_features=False)
    changed = not torch.equal(bb.body.weight, before)
    assert changed is (not frozen)
    save_retrained(model, tmp_path / "m")
    fresh = _Backbone()  # different random weights
    loaded = load_retrained(tmp_path / "m", backbone=fresh)
    if not frozen:  # the fine-tuned backbone weights come back
        torch.testing.assert_close(fresh.body.weight, bb.body.weight, rtol=0, atol=0)
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
