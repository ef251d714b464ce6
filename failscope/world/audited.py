"""The model under audit: a small CNN trained on a world's (biased, noisy) train split.

The model is saved as TorchScript. It takes a float tensor (N, 3, 32, 32) with
values in [0, 1] (normalisation happens inside) and returns logits (N, 10). It
also exposes ``features(x)`` -> (N, 64) penultimate features and its final
linear layer as ``fc`` (so ``model.fc(model.features(x)) == model(x)``).

:func:`get_audited_model` trains it or loads it from a cache keyed by the
world's key (seed, plants, sizes) and the training hyperparameters.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from failscope._torch import quiet_torchscript, torch_threads
from failscope._validation import check_int, fail
from failscope.world.generate import World

__all__ = [
    "AuditedConfig",
    "audited_cache_path",
    "audited_cnn",
    "audited_state_file",
    "eager_audited_model",
    "evaluate_slices",
    "get_audited_model",
    "load_audited_model",
    "predict_logits",
    "train_audited_model",
]

logger = logging.getLogger(__name__)
_VERSION = 1


@dataclass(frozen=True)
class AuditedConfig:
    """Training hyperparameters of the audited CNN (all part of the cache key)."""

    epochs: int = 5
    batch_size: int = 128
    lr: float = 1e-2
    weight_decay: float = 5e-4
    width: int = 16
    seed: int = 0
    threads: int = 0  # 0: keep the caller's torch thread count


def _build_net(width: int) -> Any:
    import torch
    from torch import nn

    class AuditedCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            w = width
            self.register_buffer("mean", torch.full((1, 3, 1, 1), 0.5))
            self.register_buffer("std", torch.full((1, 3, 1, 1), 0.25))

            def block(cin: int, cout: int) -> nn.Sequential:
                return nn.Sequential(
                    nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                    nn.BatchNorm2d(cout),
                    nn.ReLU(inplace=True),
                )

            self.backbone = nn.Sequential(
                block(3, w),
                nn.MaxPool2d(2),
                block(w, 2 * w),
                nn.MaxPool2d(2),
                block(2 * w, 4 * w),
                nn.MaxPool2d(2),
                block(4 * w, 4 * w),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
            )
            self.fc = nn.Linear(4 * w, 10)

        @torch.jit.export
        def features(self, x: torch.Tensor) -> torch.Tensor:
            """Penultimate features (N, 4 * width) of images (N, 3, 32, 32) in [0, 1]."""
            return self.backbone((x - self.mean) / self.std)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.features(x))

    return AuditedCNN()


def _to_tensor(images: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0


def predict_logits(model: Any, images: np.ndarray, *, batch_size: int = 1024) -> np.ndarray:
    """Logits (n, 10) of a model for uint8 images (n, 32, 32, 3)."""
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            out.append(model(_to_tensor(images[start : start + batch_size])).numpy())
    return np.concatenate(out) if out else np.zeros((0, 10), dtype=np.float32)


def train_audited_model(world: World, config: AuditedConfig | None = None) -> Any:
    """Train the audited CNN on ``world``'s train split (labels as in the manifest).

    Deterministic for ``config.seed`` on a given machine and thread count.

    Returns
    -------
    torch.jit.ScriptModule
        In eval mode.
    """
    import torch

    config = config or AuditedConfig()
    with torch_threads(config.threads):
        torch.manual_seed(config.seed)
        rng = np.random.default_rng(config.seed)
        x_all = _to_tensor(world.split_images("train"))
        y_all = torch.from_numpy(world.split_frame("train")["label"].to_numpy(np.int64).copy())
        net = _build_net(config.width)
        opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        steps_per_epoch = int(np.ceil(len(y_all) / config.batch_size))
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch, pct_start=0.2
        )
        t0 = time.perf_counter()
        net.train()
        for epoch in range(config.epochs):
            order = torch.from_numpy(rng.permutation(len(y_all)))
            total = 0.0
            for start in range(0, len(order), config.batch_size):
                idx = order[start : start + config.batch_size]
                x = x_all[idx]
                loss = torch.nn.functional.cross_entropy(net(x), y_all[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += loss.item() * len(idx)
            logger.info(
                "audited epoch %d loss %.3f (%.1fs)",
                epoch + 1,
                total / len(y_all),
                time.perf_counter() - t0,
            )
        net.eval()
        with quiet_torchscript():
            return torch.jit.script(net)


def audited_cache_path(
    world: World, config: AuditedConfig, cache_dir: str | os.PathLike[str]
) -> Path:
    """Where the audited model for ``world`` and ``config`` is cached."""
    payload = json.dumps(
        {"version": _VERSION, "world": world.key, "config": asdict(config)}, sort_keys=True
    )
    key = hashlib.sha256(payload.encode()).hexdigest()[:16]
    return Path(cache_dir) / f"audited-{key}.pt"


def load_audited_model(path: str | os.PathLike[str]) -> Any:
    """Load a TorchScript audited model (eval mode, CPU)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise fail(f"audited model file {path} does not exist")
    with quiet_torchscript():
        model = torch.jit.load(str(path), map_location="cpu")
    model.eval()
    return model


def audited_cnn(width: int = AuditedConfig.width) -> Any:
    """An untrained audited CNN as an eager ``nn.Module`` (``--model
    failscope.world.audited:audited_cnn`` with ``--checkpoint`` from :func:`audited_state_file`)."""
    return _build_net(width)


def audited_state_file(path: str | os.PathLike[str]) -> Path:
    """The ``state_dict`` of the TorchScript audited model at ``path``, as a ``.pt`` file.

    Written once beside it (``audited-<key>.state.pt``, plain tensors: loadable with
    ``torch.load(weights_only=True)``), so the same network can be loaded as an eager
    module whose layers Grad-CAM can hook.
    """
    import torch

    path = Path(path)
    out = path.with_name(path.stem + ".state.pt")
    if not out.is_file():
        from failscope.run import atomic_write

        state = eager_audited_model(path).state_dict()
        atomic_write(out, lambda tmp: torch.save(state, tmp))
    return out


def eager_audited_model(model: Any) -> Any:
    """The same network as an eager ``nn.Module`` (same weights), e.g. for Grad-CAM's hooks.

    Parameters
    ----------
    model : torch.jit.ScriptModule or path
        An audited model saved by :func:`get_audited_model`, or its file.

    Returns
    -------
    torch.nn.Module
        In eval mode; ``eager(x) == model(x)``.
    """
    if not hasattr(model, "state_dict"):
        model = load_audited_model(model)
    state = model.state_dict()
    net = _build_net(int(state["fc.weight"].shape[1]) // 4)
    net.load_state_dict(state)
    return net.eval()


def get_audited_model(
    world: World,
    *,
    config: AuditedConfig | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> tuple[Path, Any]:
    """Train the audited model for ``world``, or load it if cached.

    Parameters
    ----------
    world : World
    config : AuditedConfig, optional
        Hyperparameters; default ``AuditedConfig()``.
    cache_dir : path, optional
        Default ``world.root / "models"``; required for in-memory worlds.

    Returns
    -------
    path : Path
        The TorchScript file.
    model : torch.jit.ScriptModule
    """
    import torch

    config = config or AuditedConfig()
    check_int(config.epochs, name="epochs", low=1)
    if cache_dir is None:
        if world.root is None:
            raise fail("cache_dir is required for a world that was not written to disk")
        cache_dir = world.root / "models"
    path = audited_cache_path(world, config, cache_dir)
    if path.is_file():
        logger.info("loading cached audited model %s", path)
        return path, load_audited_model(path)
    model = train_audited_model(world, config)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with quiet_torchscript():
        torch.jit.save(model, str(tmp))
    os.replace(tmp, path)
    return path, model


def evaluate_slices(model: Any, world: World, *, split: str = "test") -> dict[str, Any]:
    """Accuracy of ``model`` on ``split`` overall and inside each planted slice.

    Returns
    -------
    dict
        ``{"overall": acc, "slices": {name: {"accuracy": acc, "n": n, "gap": overall - acc}}}``
        (accuracy against the clean ``true_label``).
    """
    frame = world.split_frame(split)
    pred = predict_logits(model, world.split_images(split)).argmax(1)
    correct = pred == frame["true_label"].to_numpy()
    overall = float(correct.mean())
    slices = {}
    for plant in world.plants:
        mask = frame[f"planted_{plant.name}"].to_numpy(bool)
        acc = float(correct[mask].mean()) if mask.any() else float("nan")
        slices[plant.name] = {"accuracy": acc, "n": int(mask.sum()), "gap": overall - acc}
    return {"overall": overall, "slices": slices}
