"""Attribution methods: Grad-CAM's known map, the TorchScript fallback, method choice."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from failscope._validation import InputError
from failscope.attribute import Attributor, choose_method, grad_cam
from failscope.attribute.features import masked_clip_inputs, pooled_features

torch = pytest.importorskip("torch")

#: The red square of the constructed input: rows 2-3, columns 4-6 of an 8 x 8 image.
SQUARE = np.zeros((8, 8), dtype=np.float32)
SQUARE[2:4, 4:7] = 1.0


def red_detector():
    """conv 1x1 (red channel) -> ReLU -> mean -> logits (+mean, -mean): class 0 iff red."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 1, 1, bias=False),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(1, 2, bias=False),
    )
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1))
        net[4].weight.copy_(torch.tensor([[1.0], [-1.0]]))
    return net.eval()


def red_square_input() -> torch.Tensor:
    x = torch.zeros(1, 3, 8, 8)
    x[0, 0] = torch.from_numpy(SQUARE)
    return x


def test_grad_cam_gives_the_known_map_on_a_constructed_input():
    net, x = red_detector(), red_square_input()
    # predicted class 0: d logit0 / dA = 1/64 on the square (ReLU passes it), 0 elsewhere,
    # so the channel weight is positive and ReLU(weight * A) is the square itself
    np.testing.assert_allclose(grad_cam(net, x), SQUARE[None], atol=1e-6)
    np.testing.assert_allclose(grad_cam(net, x, target=[0], layer="0"), SQUARE[None], atol=1e-6)
    # class 1's weight is negative: Grad-CAM's ReLU leaves nothing
    np.testing.assert_array_equal(grad_cam(net, x, target=[1]), np.zeros((1, 8, 8)))


def test_grad_cam_activations_pool_to_attribution_weighted_features():
    net, x = red_detector(), red_square_input()
    choice = choose_method(net)
    assert (choice.method, choice.layer, choice.reason) == ("gradcam", "0", None)
    maps, acts = Attributor(net, choice, activations=True)(x, [0])
    assert tuple(acts.shape) == (1, 1, 8, 8)
    # weights = the square, activations = 1 on it: the pooled feature is exactly 1
    np.testing.assert_allclose(pooled_features(maps, acts), [[1.0]], atol=1e-6)
    # a zero map pools uniformly: the mean activation, 6 of 64 pixels
    np.testing.assert_allclose(pooled_features(np.zeros((1, 8, 8)), acts), [[6 / 64]], atol=1e-6)


def _scripted(net):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated
        return torch.jit.script(net)


def test_torchscript_falls_back_to_saliency_with_the_same_known_map():
    scripted = _scripted(red_detector())
    choice = choose_method(scripted)
    assert choice.method == "saliency" and choice.layer is None
    assert "TorchScript" in choice.reason
    calls = []  # why: a scripted module's layers refuse hooks, or never call them
    layer = dict(scripted.named_modules())["0"]
    try:
        layer.register_forward_hook(lambda *a: calls.append(1))
    except RuntimeError:
        pass
    scripted(red_square_input())
    assert calls == []
    maps, acts = Attributor(scripted, choice)(red_square_input(), [0])
    assert acts is None
    # |d logit0 / d x| is 1/64 on the square's red pixels and 0 elsewhere
    np.testing.assert_allclose(maps, SQUARE[None], atol=1e-6)


def test_method_choice_refuses_what_cannot_work():
    net, scripted = red_detector(), _scripted(red_detector())
    with pytest.raises(InputError, match="TorchScript"):
        choose_method(scripted, "gradcam")
    with pytest.raises(InputError, match="'nope' is not a layer"):
        choose_method(net, "auto", "nope")
    with pytest.raises(InputError, match="Grad-CAM only"):
        choose_method(net, "saliency", "0")
    with pytest.raises(InputError, match="one of"):
        choose_method(net, "lime")
    dense = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 2))
    assert choose_method(dense).method == "saliency"
    assert "no Conv2d" in choose_method(dense).reason


def test_gradient_maps_are_averaged_to_the_grid():
    net = red_detector()
    x = torch.zeros(1, 3, 16, 16)
    x[0, 0, 4:8, 8:12] = 1.0  # cells 2-3 x 4-5 of an 8 x 8 grid
    maps, _ = Attributor(net, choose_method(net, "input_x_gradient"), grid=8)(x, [0])
    want = np.zeros((8, 8))
    want[2:4, 4:6] = 1.0
    np.testing.assert_allclose(maps[0], want, atol=1e-6)


def test_masked_clip_inputs_fade_low_attribution_to_clip_mean():
    cfg = {"size": 4, "mean": [0.5, 0.25, 0.75], "std": [0.5, 0.5, 0.5]}
    x = torch.rand(2, 3, 8, 8)
    kept = masked_clip_inputs(x, np.ones((2, 2, 2)), clip_cfg=cfg)
    gone = masked_clip_inputs(x, np.zeros((2, 2, 2)), clip_cfg=cfg)
    assert tuple(kept.shape) == (2, 3, 4, 4)
    np.testing.assert_allclose(gone.numpy(), 0.0, atol=1e-6)  # every pixel = CLIP's mean
    mean = torch.tensor(cfg["mean"]).view(1, 3, 1, 1)
    want = torch.nn.functional.interpolate(x, size=(4, 4), mode="bicubic", antialias=True)
    np.testing.assert_allclose(kept.numpy(), ((want.clamp(0, 1) - mean) / 0.5).numpy(), atol=1e-5)
