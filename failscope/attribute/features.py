"""Attribution-weighted features: what the model looks at, as vectors a slicer can cluster.

Two kinds (AttributionScanner's feature vectors, and a CLIP view of them):

* ``model``: the audited model's own feature map at the Grad-CAM layer, pooled
  with the example's normalised attribution as weights,
  ``f_c = sum_hw a_hw A_chw / sum_hw a_hw`` (global average pooling where the
  attribution is zero everywhere). Only Grad-CAM has a layer, so only Grad-CAM
  runs have them.
* ``clip``: the CLIP embedding of the **attribution-masked** model input: the
  map is upsampled (bilinear) to the input's size, and every pixel is blended
  towards CLIP's mean colour by one minus its attribution (low-attribution
  regions fade out), then resized and normalised as CLIP expects. CLIP sees
  exactly the view the model saw, so captions can name what the model attends to.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["FEATURE_KINDS", "masked_clip_inputs", "pooled_features"]

#: The kinds of attribution-weighted features.
FEATURE_KINDS = ("model", "clip")
#: CLIP's usual normalisation (open_clip's OpenAI constants), for CLIPs that record none.
_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def pooled_features(maps: np.ndarray, activations: Any) -> np.ndarray:
    """``model`` features: activations (b, C, h, w) pooled with maps (b, h, w) as weights.

    Returns
    -------
    ndarray of float32, shape (b, C)
    """
    import torch

    w = torch.as_tensor(maps, dtype=torch.float32, device=activations.device)
    total = w.sum(dim=(1, 2), keepdim=True)
    uniform = torch.full_like(w, 1.0 / (w.shape[1] * w.shape[2]))
    w = torch.where(total > 0, w / total.clamp_min(1e-12), uniform)
    return torch.einsum("bchw,bhw->bc", activations.float(), w).cpu().numpy()


def masked_clip_inputs(
    x: Any,
    maps: np.ndarray,
    *,
    model_mean: Any = None,
    model_std: Any = None,
    clip_cfg: dict[str, Any] | None = None,
) -> Any:
    """CLIP inputs (b, 3, S, S) of the attribution-masked model inputs (see the module docstring).

    Parameters
    ----------
    x : torch.Tensor of shape (b, 3, H, W)
        The model's inputs, normalised with ``model_mean``/``model_std`` if given,
        else in [0, 1].
    maps : ndarray of shape (b, h, w)
        Attribution maps in [0, 1].
    model_mean, model_std : sequence of 3 floats, optional
        The model transform's normalisation (``run.json``'s model spec).
    clip_cfg : dict, optional
        The CLIP's ``preprocess_cfg`` (``size``, ``mean``, ``std``).
    """
    import torch
    import torch.nn.functional as F

    cfg = clip_cfg or {}
    x = x.detach().float()
    dev = x.device

    def col(v: Any) -> Any:
        return torch.as_tensor(v, dtype=torch.float32, device=dev).view(1, 3, 1, 1)

    img = x * col(model_std) + col(model_mean) if model_mean is not None else x
    img = img.clamp(0, 1)
    m = torch.as_tensor(maps, dtype=torch.float32, device=dev)[:, None]
    m = F.interpolate(m, size=img.shape[-2:], mode="bilinear", align_corners=False).clamp(0, 1)
    mean, std = col(cfg.get("mean", _CLIP_MEAN)), col(cfg.get("std", _CLIP_STD))
    img = img * m + mean * (1 - m)
    size = cfg.get("size", 224)
    side = int(size[0] if isinstance(size, (list, tuple)) else size)
    h, w = img.shape[-2:]
    scale = side / min(h, w)  # shortest side to `side`, then the centre square
    new = (max(side, round(h * scale)), max(side, round(w * scale)))
    if new != (h, w):
        img = F.interpolate(img, size=new, mode="bicubic", align_corners=False, antialias=True)
    top, left = (new[0] - side) // 2, (new[1] - side) // 2
    img = img[:, :, top : top + side, left : left + side].clamp(0, 1)
    return (img - mean) / std
