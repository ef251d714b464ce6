"""Engines for the per-image passes of ``discover``: CLIP embeddings and the audited model.

* ``"local"``: this process, a torch ``DataLoader`` (:func:`failscope.embed.embed_dataset`,
  :func:`failscope.engines.local.predict_cached`).
* ``"ray"``: Ray Data on a local Ray instance or a cluster
  (:func:`failscope.engines.ray_data.fill_caches`); needs ``pip install 'failscope[ray]'``.

Both write the same resumable caches (:mod:`failscope.rowcache`): the Ray engine fills
the rows still missing, then the local passes read them and compute nothing, so every
later stage is unchanged and a re-run, or a run restarted after a kill, computes only
what is missing.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from failscope._validation import check_choice, check_int, fail

__all__ = ["ENGINES", "EngineOptions", "prefill_caches"]

ENGINES = ("local", "ray")


@dataclass(frozen=True)
class EngineOptions:
    """Where the embedding and prediction passes run.

    Parameters
    ----------
    engine : {"local", "ray"}, default="local"
        ``"ray"`` needs Ray Data (``pip install 'failscope[ray]'``; checked here).
    ray_address : str or None, default=None
        None starts a local Ray instance for the run (and stops it after);
        ``"auto"`` joins the cluster this machine belongs to (``ray start --head``);
        ``"ray://HOST:10001"`` or ``"HOST:6379"`` a given one.
    ray_actors : int, default=1
        Model actors: each loads CLIP and the audited model once.
    ray_gpus_per_actor : float, default=0.0
        GPUs each actor reserves (> 0 runs the models on CUDA; fractions share a GPU).
    """

    engine: str = "local"
    ray_address: str | None = None
    ray_actors: int = 1
    ray_gpus_per_actor: float = 0.0

    def __post_init__(self) -> None:
        check_choice(self.engine, ENGINES, name="engine")
        check_int(self.ray_actors, name="ray_actors", low=1)
        gpus = self.ray_gpus_per_actor
        if isinstance(gpus, bool) or not isinstance(gpus, (int, float)) or not math.isfinite(gpus):
            raise fail(f"ray_gpus_per_actor must be a number >= 0, got {gpus!r}")
        if gpus < 0:
            raise fail(f"ray_gpus_per_actor={gpus} must be >= 0")
        if self.ray_address is not None and not str(self.ray_address).strip():
            raise fail("ray_address is empty; pass 'auto', HOST:PORT or ray://HOST:PORT")
        if self.engine == "ray":  # fail at the door when Ray Data is not installed
            from failscope.engines.ray_data import _import_ray

            _import_ray()

    def to_json(self) -> dict[str, Any]:
        """The options as ``run.json["config"]`` records them."""
        return asdict(self)


def prefill_caches(
    dataset: Any,
    *,
    options: EngineOptions,
    clip: Any,
    model_spec: dict[str, Any] | None,
    module: Any,
    cache_dir: Any,
    batch_size: int,
    progress: Any = None,
) -> dict[str, Any] | None:
    """Compute the cache rows still missing with the chosen engine, before the local passes.

    ``"local"`` does nothing here (its passes compute their own rows); ``"ray"`` runs
    :func:`failscope.engines.ray_data.fill_caches`.

    Parameters
    ----------
    dataset : ImageDataset
    options : EngineOptions
    clip : ClipModel or None
        None: no embedding pass (precomputed embeddings).
    model_spec : dict or None
        The audited model's spec; None: no prediction pass (a predictions file).
    module : torch.nn.Module or None
        The audited model as loaded here (its identity keys the predictions cache).
    cache_dir : path
    batch_size : int
    progress : callable(done, total), optional

    Returns
    -------
    dict or None
        What the engine did (rows computed, timings), for ``run.json``; None for local.
    """
    if options.engine == "local":
        return None
    from failscope.engines.ray_data import fill_caches

    return fill_caches(
        dataset, options=options, clip=clip, model_spec=model_spec, module=module,
        cache_dir=cache_dir, batch_size=batch_size, progress=progress,
    )  # fmt: skip
