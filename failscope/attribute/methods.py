"""Attribution methods through Captum: Grad-CAM on a conv layer, or a gradient method.

Grad-CAM (:class:`captum.attr.LayerGradCam`) needs a forward hook on a layer of the
model. A TorchScript module cannot be hooked, and a model without a ``Conv2d`` has
no layer grid, so for those ``method="auto"`` falls back to a model-agnostic
gradient method (:data:`FALLBACK`) and says why (:attr:`MethodChoice.reason`, which
``run.json`` records).

Every method explains the **predicted class** (the target is given) and returns a
low-resolution map per image, scaled so that each map's maximum is 1 (all zeros
when the attribution is zero everywhere):

* ``gradcam``: ReLU of the gradient-weighted sum of the layer's channels, on the
  layer's own grid (e.g. 7x7 for a ResNet's last block at 224 px);
* ``input_x_gradient``, ``saliency``, ``integrated_gradients``: the absolute
  attribution of each input pixel summed over colour channels, averaged over the
  cells of a :data:`GRID` x :data:`GRID` grid.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from failscope._validation import check_choice, fail
from failscope.run.config import ATTRIBUTION_METHODS

logger = logging.getLogger(__name__)

__all__ = [
    "FALLBACK",
    "GRID",
    "METHODS",
    "Attributor",
    "MethodChoice",
    "choose_method",
    "conv_layers",
    "grad_cam",
]

#: ``method`` values; ``"auto"`` is Grad-CAM where it applies, else :data:`FALLBACK`.
METHODS = ATTRIBUTION_METHODS
#: The gradient method used where Grad-CAM does not apply.
FALLBACK = "saliency"
#: Side of the grid that gradient methods' pixel maps are averaged to.
GRID = 8
#: Interpolation steps of integrated gradients (each costs a forward and backward pass).
IG_STEPS = 16


@dataclass(frozen=True)
class MethodChoice:
    """The attribution method a model gets.

    Attributes
    ----------
    method : str
        One of :data:`METHODS` but ``"auto"``.
    layer : str or None
        Name of the hooked layer (``model.named_modules()``), for Grad-CAM.
    reason : str or None
        Why Grad-CAM was not used, when ``"auto"`` fell back.
    """

    method: str
    layer: str | None = None
    reason: str | None = None


def _is_scripted(module: Any) -> bool:
    import torch

    return isinstance(module, torch.jit.ScriptModule)


def conv_layers(module: Any) -> list[str]:
    """Names of the model's ``Conv2d`` layers, in definition order (TorchScript too)."""
    import torch

    names = []
    for name, sub in module.named_modules():
        is_conv = isinstance(sub, torch.nn.Conv2d) or getattr(sub, "original_name", "") == "Conv2d"
        if is_conv and name:
            names.append(name)
    return names


def choose_method(module: Any, method: str = "auto", layer: str | None = None) -> MethodChoice:
    """The attribution method for ``module`` (see the module docstring).

    Parameters
    ----------
    module : torch.nn.Module
    method : str, default="auto"
        One of :data:`METHODS`.
    layer : str, optional
        Grad-CAM's layer (a name from ``module.named_modules()``); default: the last
        ``Conv2d``.

    Raises
    ------
    InputError
        ``method="gradcam"`` (or a ``layer``) for a model Grad-CAM cannot hook, an
        unknown layer, or a ``layer`` with a gradient method.
    """
    check_choice(method, METHODS, name="attribution method")
    if method not in ("auto", "gradcam"):
        if layer is not None:
            raise fail(
                f"--attribution-layer {layer} applies to Grad-CAM only, not to --attribution-"
                f"method {method}; drop one of them"
            )
        return MethodChoice(method)
    convs = conv_layers(module)
    if _is_scripted(module):
        reason = "TorchScript modules cannot be hooked, so Grad-CAM does not apply"
    elif layer is not None:
        if layer not in dict(module.named_modules()) or not layer:
            shown = ", ".join(convs[-5:]) or "none"
            raise fail(
                f"--attribution-layer {layer!r} is not a layer of the model (its last conv "
                f"layers: {shown})"
            )
        return MethodChoice("gradcam", layer)
    elif convs:
        return MethodChoice("gradcam", convs[-1])
    else:
        reason = "the model has no Conv2d layer, so Grad-CAM has no grid"
    if method == "gradcam" or layer is not None:
        raise fail(f"Grad-CAM cannot be used on this model: {reason}; use --attribution-method "
                   f"auto (falls back to {FALLBACK}) or a gradient method")  # fmt: skip
    logger.info("attributions: %s; using %s", reason, FALLBACK)
    return MethodChoice(FALLBACK, None, reason)


def _as_logits_module(module: Any) -> Any:
    """``module`` wrapped so that its output is the logits tensor (Captum's contract)."""
    import torch

    from failscope.data.models import _logits

    class _Logits(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return _logits(self.inner(x))

    return _Logits(module)


def _scaled(maps: Any) -> np.ndarray:
    """(b, h, w) tensor -> float32 array with each map's maximum 1 (zero maps stay zero)."""
    arr = maps.detach().float().cpu().numpy()
    top = arr.reshape(len(arr), -1).max(axis=1)
    top = np.where(top > 0, top, 1.0).astype(np.float32)
    return np.maximum(arr, 0) / top[:, None, None]


class Attributor:
    """Attribution maps of one model for batches of inputs, through Captum.

    Parameters
    ----------
    module : torch.nn.Module
        The audited model, on its device, in eval mode.
    choice : MethodChoice
        From :func:`choose_method`.
    grid : int, default=GRID
        Side of gradient methods' maps (Grad-CAM uses its layer's grid).
    activations : bool, default=False
        Also return Grad-CAM's layer activations (for attribution-weighted model
        features); an extra forward pass.
    """

    def __init__(
        self, module: Any, choice: MethodChoice, *, grid: int = GRID, activations: bool = False
    ) -> None:
        from captum.attr import (
            InputXGradient,
            IntegratedGradients,
            LayerActivation,
            LayerGradCam,
            Saliency,
        )

        self.choice = choice
        self.grid = int(grid)
        wrapped = _as_logits_module(module)
        self._activation = None
        if choice.method == "gradcam":
            layer = dict(module.named_modules())[choice.layer]
            self._method: Any = LayerGradCam(wrapped, layer)
            if activations:
                self._activation = LayerActivation(wrapped, layer)
        else:
            cls = {"input_x_gradient": InputXGradient, "saliency": Saliency,
                   "integrated_gradients": IntegratedGradients}[choice.method]  # fmt: skip
            self._method = cls(wrapped)

    def __call__(self, x: Any, target: Any) -> tuple[np.ndarray, Any]:
        """Maps (b, h, w) float32 (max 1 each) and, if asked for, activations (b, C, h, w).

        Parameters
        ----------
        x : torch.Tensor of shape (b, 3, H, W)
            Model inputs (after the model's transform), on the model's device.
        target : array-like of int, shape (b,)
            The class to explain per image (the predicted one).
        """
        import torch
        import torch.nn.functional as F

        target = torch.as_tensor(np.asarray(target, dtype=np.int64), device=x.device)
        x = x.detach().clone().requires_grad_(True)
        method = self.choice.method
        if method == "gradcam":
            cam = self._method.attribute(x, target=target, relu_attributions=True)[:, 0]
            acts = None
            if self._activation is not None:
                with torch.no_grad():
                    acts = self._activation.attribute(x.detach())
                acts = acts.detach().float()
            return _scaled(cam), acts
        kwargs: dict[str, Any] = {"target": target}
        if method == "saliency":
            kwargs["abs"] = True
        elif method == "integrated_gradients":
            kwargs.update(n_steps=IG_STEPS, internal_batch_size=len(x))
        attr = self._method.attribute(x, **kwargs)
        pix = attr.detach().abs().sum(dim=1, keepdim=True)
        side = min(self.grid, pix.shape[-2], pix.shape[-1])
        return _scaled(F.adaptive_avg_pool2d(pix, side)[:, 0]), None


def grad_cam(
    model: Any, images: Any, *, target: Any = None, layer: str | None = None
) -> np.ndarray:
    """Grad-CAM maps of ``model`` for a batch of images, through Captum's ``LayerGradCam``.

    Parameters
    ----------
    model : torch.nn.Module
        An eager (not TorchScript) model with a ``Conv2d`` layer.
    images : torch.Tensor of shape (b, 3, H, W)
        Model inputs.
    target : array-like of int, shape (b,), optional
        The class to explain per image; default: the predicted class.
    layer : str, optional
        The hooked layer; default: the last ``Conv2d``.

    Returns
    -------
    ndarray of float32, shape (b, h, w)
        On the layer's grid, each map's maximum 1 (zeros where Grad-CAM is zero).
    """
    import torch

    choice = choose_method(model, "gradcam", layer)
    if target is None:
        from failscope.data.models import _logits

        with torch.no_grad():
            target = _logits(model(images)).argmax(dim=1).cpu().numpy()
    maps, _ = Attributor(model, choice)(images, target)
    return maps
