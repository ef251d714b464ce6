"""Training the whole audited model on images (the fixes that a frozen head cannot make).

A head on frozen features inherits what the backbone learned: trained on wrong labels,
the world's CNN maps yellow 2s to features that look like 7s, so no head on them can
call them 2 again, and a colour shortcut lives in the backbone too. The noisy-label and
spurious fixes therefore train the backbone: :func:`reinitialize` gives the audited
architecture new random weights, and :func:`train_on_images` trains a model on
images with optional per-image regions to perturb (:mod:`failscope.retrain.crm`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from failscope._validation import check_int, fail

__all__ = ["ImageTrainConfig", "as_classifier", "predict_images", "reinitialize", "train_on_images"]


@dataclass(frozen=True)
class ImageTrainConfig:
    """Optimisation of a model trained on images (AdamW, one-cycle schedule).

    Parameters
    ----------
    epochs : int, default=4
    lr : float, default=2e-3
        Peak learning rate (fine-tuning; from scratch the world's audited CNN uses 1e-2).
    weight_decay : float, default=5e-4
    batch_size : int, default=128
    """

    epochs: int = 4
    lr: float = 2e-3
    weight_decay: float = 5e-4
    batch_size: int = 128

    def __post_init__(self) -> None:
        check_int(self.epochs, name="epochs", low=1)
        check_int(self.batch_size, name="batch_size", low=1)
        if not (math.isfinite(float(self.lr)) and self.lr > 0):
            raise fail(f"lr={self.lr!r} must be a positive number")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def reinitialize(module: Any, *, seed: int) -> Any:
    """Give ``module`` new random weights in place and return it (PyTorch's default
    initialisations: Kaiming-uniform weights, zero biases, unit norm scales, reset
    running statistics). Works on TorchScript modules (set by parameter name); pass a
    freshly loaded copy (``copy.deepcopy`` of a TorchScript module cannot be trained).
    """
    import torch

    new = module
    gen = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for name, p in new.named_parameters():
            if p.ndim >= 2:
                fan_in = p[0].numel()
                bound = 1.0 / math.sqrt(fan_in)  # kaiming_uniform_(a=sqrt(5)), as nn.Conv/Linear
                p.copy_(torch.rand(p.shape, generator=gen) * 2 * bound - bound)
            elif name.endswith("bias"):
                p.zero_()
            else:
                p.fill_(1.0)
        for name, b in new.named_buffers():
            if name.endswith("running_mean") or name.endswith("num_batches_tracked"):
                b.zero_()
            elif name.endswith("running_var"):
                b.fill_(1.0)
    return new


def as_classifier(module: Any, n_classes: int, *, seed: int) -> Any:
    """``module`` as a :class:`~failscope.retrain.sbl.LinearHead` with a trainable backbone,
    its head started from the module's own final layer (so the pair predicts as it did)."""
    import torch

    from failscope.retrain.features import final_linear
    from failscope.retrain.sbl import LinearHead

    for name in ("fc", "head", "classifier"):
        w = getattr(getattr(module, name, None), "weight", None)
        if w is not None and w.ndim == 2 and w.shape[0] == n_classes:
            d = int(w.shape[1])
            break
    else:
        raise fail(
            "the audited model has no final linear layer named fc/head/classifier with one "
            "output per class, so its backbone cannot be trained here"
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = LinearHead(in_features=d, n_classes=n_classes, backbone=module,
                           freeze_backbone=False)  # fmt: skip
    w, b = final_linear(module, n_classes, d)
    model.init_from(w.detach().float(), None if b is None else b.detach().float())
    return model


def train_on_images(
    model: Any,
    x: Any,
    y: np.ndarray,
    *,
    config: ImageTrainConfig,
    seed: int,
    augment: Callable[[Any, Any, Any], tuple[Any, Any]] | None = None,
) -> list[float]:
    """Train ``model`` (images -> logits) with cross-entropy; return the loss per epoch.

    Parameters
    ----------
    model : nn.Module
    x : Tensor of shape (n, 3, H, W)
    y : ndarray of int, shape (n,)
    config : ImageTrainConfig
    seed : int
        Seeds the batch order and ``augment``'s draws.
    augment : callable, optional
        ``augment(x_batch, index, generator) -> (x_batch, extra_loss or None)``.
    """
    import torch
    from torch.nn import functional as F

    yt = torch.from_numpy(np.asarray(y, dtype=np.int64))
    gen = torch.Generator().manual_seed(int(seed))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    n = len(yt)
    steps = config.epochs * ((n + config.batch_size - 1) // config.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=config.lr, total_steps=steps, pct_start=0.2
    )
    losses = []
    model.train()
    try:
        for _ in range(config.epochs):
            order = torch.randperm(n, generator=gen)
            total = 0.0
            for s in range(0, n, config.batch_size):
                idx = order[s : s + config.batch_size]
                xb, extra = x[idx], None
                if augment is not None:
                    xb, extra = augment(xb, idx, gen)
                if extra is None:
                    loss = F.cross_entropy(model(xb), yt[idx])
                else:
                    loss = extra(model, xb, yt[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach()) * len(idx)
            losses.append(total / n)
    finally:
        model.eval()
    return losses


def predict_images(model: Any, x: Any, *, batch_size: int = 1024) -> np.ndarray:
    """Softmax probabilities (n, C) of ``model`` on images ``x``, in eval mode."""
    import torch

    model.eval()
    out = []
    with torch.inference_mode():
        for s in range(0, len(x), batch_size):
            out.append(torch.softmax(model(x[s : s + batch_size]).float(), dim=1).numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)
