"""The training loop shared by every retraining method (same optimizer, same budget)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from failscope._validation import check_int, check_seed, fail

logger = logging.getLogger(__name__)

__all__ = ["TrainConfig", "fit_head", "predict_logits"]


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings, identical for every method of one retrain.

    Parameters
    ----------
    epochs : int, default=40
        Passes over the training split.
    lr : float, default=1e-2
        AdamW learning rate.
    weight_decay : float, default=1e-4
        AdamW weight decay.
    batch_size : int, default=1024
        Mini-batch size; 0 means full batch.
    seed : int, default=0
        Seeds the initialisation (by the caller) and the batch order.
    threads : int, default=1
        torch CPU threads while training (restored afterwards); the heads are small,
        so threading overhead outweighs its gain. 0 keeps the current setting.
    backbone_lr_scale : float, default=0.1
        Learning rate of a fine-tuned backbone, as a fraction of ``lr``.
    """

    epochs: int = 40
    lr: float = 1e-2
    weight_decay: float = 1e-4
    batch_size: int = 1024
    seed: int = 0
    threads: int = 1
    backbone_lr_scale: float = 0.1

    def __post_init__(self) -> None:
        check_int(self.epochs, name="epochs", low=1)
        check_int(self.batch_size, name="batch_size", low=0)
        check_seed(self.seed)
        check_int(self.threads, name="threads", low=0)
        if not (float(self.lr) > 0 and np.isfinite(self.lr)):
            raise fail(f"lr={self.lr!r} must be a positive number")
        if not (float(self.weight_decay) >= 0 and np.isfinite(self.weight_decay)):
            raise fail(f"weight_decay={self.weight_decay!r} must be a number >= 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _as_tensor(x: Any, dtype: torch.dtype) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.to(dtype)
    arr = np.asarray(x)
    if not arr.flags.writeable:  # memory maps and read-only views
        arr = np.array(arr)
    return torch.as_tensor(arr, dtype=dtype)


def fit_head(
    model: torch.nn.Module,
    inputs: Any,
    labels: Any,
    *,
    membership: Any | None = None,
    sample_weight: Any | None = None,
    config: TrainConfig = TrainConfig(),
    on_features: bool = True,
    callback: Callable[[int, float], None] | None = None,
) -> dict[str, Any]:
    """Train ``model`` (a :class:`SliceAwareClassifier` or :class:`LinearHead`).

    Parameters
    ----------
    model : nn.Module
        Has ``forward_features(f) -> dict`` and ``loss(out, y, membership, sample_weight=)``.
    inputs : array-like of shape (n, d) or (n, ...)
        Cached backbone features when ``on_features`` (the frozen-backbone case),
        else the backbone's inputs (images).
    labels : array-like of shape (n,)
    membership : array-like of shape (n, K), optional
        Slice membership (SBL/MoA only).
    sample_weight : array-like of shape (n,), optional
        Per-example weights of the master loss.
    config : TrainConfig
    on_features : bool, default=True
    callback : callable, optional
        Called as ``callback(epoch, mean_loss)`` after every epoch.

    Returns
    -------
    dict
        ``losses`` (mean loss per epoch), ``seconds``, ``steps``.
    """
    x = _as_tensor(inputs, torch.float32)
    y = _as_tensor(labels, torch.long)
    n = len(y)
    if len(x) != n:
        raise fail(f"inputs have {len(x)} rows but labels have {n}")
    m = None if membership is None else _as_tensor(membership, torch.float32)
    w = None if sample_weight is None else _as_tensor(sample_weight, torch.float32)
    if m is None and hasattr(model, "slice_names"):
        m = torch.zeros(n, len(model.slice_names))
    head = [
        p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("backbone.")
    ]
    body = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith("backbone.")]
    groups = [{"params": head}]
    if body:  # a fine-tuned backbone moves more slowly than the fresh head
        groups.append({"params": body, "lr": config.lr * config.backbone_lr_scale})
    opt = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    gen = torch.Generator().manual_seed(int(config.seed))
    bs = n if config.batch_size == 0 else min(config.batch_size, n)
    losses: list[float] = []
    start = time.perf_counter()
    threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    model.train()
    try:
        for epoch in range(config.epochs):
            order = torch.randperm(n, generator=gen)
            total = 0.0
            for s in range(0, n, bs):
                idx = order[s : s + bs]
                f = x[idx] if on_features else model.features(x[idx])
                parts = model.loss(
                    model.forward_features(f),
                    y[idx],
                    None if m is None else m[idx],
                    sample_weight=None if w is None else w[idx],
                )
                opt.zero_grad(set_to_none=True)
                parts["loss"].backward()
                opt.step()
                total += float(parts["loss"].detach()) * len(idx)
            losses.append(total / n)
            if callback is not None:
                callback(epoch, losses[-1])
    finally:
        torch.set_num_threads(threads)
        model.eval()
    return {
        "losses": losses,
        "seconds": time.perf_counter() - start,
        "steps": config.epochs * ((n + bs - 1) // bs),
    }


@torch.no_grad()
def predict_logits(
    model: torch.nn.Module, inputs: Any, *, on_features: bool = True, batch_size: int = 4096
) -> np.ndarray:
    """Class logits of shape (n, C) as float32 numpy, in evaluation mode."""
    model.eval()
    x = _as_tensor(inputs, torch.float32)
    outs = []
    for s in range(0, len(x), batch_size):
        f = x[s : s + batch_size]
        f = f if on_features else model.features(f)
        outs.append(model.forward_features(f)["logits"])
    if not outs:
        return np.zeros((0, model.n_classes), dtype=np.float32)
    return torch.cat(outs).numpy().astype(np.float32)
