"""CLIP image and text embeddings, and a resumable on-disk embedding cache.

CLIP backbones are resolved by name (:func:`load_clip`):

* a registered name (:func:`list_clip_models`, :func:`add_clip_model`), e.g.
  ``"world"``, the built-in world's CLIP, imported only when asked for;
* an open_clip architecture (``open_clip.list_models()``) with a pretrained tag
  (``open_clip.list_pretrained()``), or with a local ``checkpoint`` file;
* ``hf-hub:ORG/REPO``, an open_clip model on the Hugging Face hub;
* a path to an open_clip model config ``.json`` (architecture as data) with a
  ``checkpoint``;
* ``local-dir:FOLDER`` (open_clip's folder layout: ``open_clip_config.json`` plus weights).

Pretrained weights follow open_clip's convention: they are read from the local
cache (the Hugging Face hub cache, or ``~/.cache/clip`` for URL tags; or
``cache_dir``) and, when not there, downloaded into it by open_clip's own
downloader on first use. ``offline=True`` or ``HF_HUB_OFFLINE=1`` forbids the
download: then a missing file is a one-line error with the exact command that
fetches it. Random weights are never a fallback: they are refused unless
``random_init=True`` (meant for tests).

:func:`embed_dataset` writes embeddings into ``CACHE/embeddings-<identity>/``, a
:class:`failscope.rowcache.RowCache` (format 1, unchanged since the first release):
``embeddings.npy`` of the final shape (n, d), memory-mapped, row i = example i;
``keys.npy``, one uint64 per row naming the file version the row was computed
from (0: not done; by default the file's path, size and mtime, or with
``cache_key="content"`` a hash of its bytes, see
:meth:`~failscope.data.ImageDataset.file_keys`); and ``meta.json``. Finished rows are marked
done only after their embeddings are flushed, every ``flush_seconds`` and when the
run stops (also on an exception), so a killed run resumes where it stopped and a
changed file is recomputed. Skipped (unreadable) images get NaN rows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from failscope._validation import check_choice, check_file, fail, open_npy
from failscope.rowcache import RowCache, fill_rows
from failscope.run._io import file_sha256

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_CLIP",
    "DEFAULT_PRETRAINED",
    "ClipModel",
    "add_clip_model",
    "embed_dataset",
    "list_clip_models",
    "load_clip",
    "load_clip_from_spec",
    "load_embeddings",
]

DEFAULT_CLIP = "ViT-B-32"
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"
PRECISIONS = ("fp32", "fp16", "bf16")
CACHE_FORMAT = 1
RANDOM_INIT_SEED = 0

Progress = Callable[[int, int], None]


# --------------------------------------------------------------------------- the model


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def state_dict_sha256(model: Any) -> str:
    """sha256 over a module's parameter and buffer names and bytes."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(dtype=_u8()).numpy().tobytes())
    return h.hexdigest()


def _u8() -> Any:
    import torch

    return torch.uint8


@dataclass
class ClipModel:
    """A loaded CLIP: image and text towers, preprocessing, tokenizer, identity.

    Attributes
    ----------
    model : torch.nn.Module
        Has ``encode_image`` and ``encode_text`` (open_clip's interface), in eval mode.
    preprocess : callable
        PIL image -> float tensor (3, H, W).
    tokenizer : callable
        list of str -> token tensor (n, context_length).
    device : str
    name : str
        How it was asked for (registered name, open_clip name, config path).
    pretrained : str or None
        open_clip pretrained tag, if any.
    identity : str
        sha256 hex of the weights (tag or file hash), preprocessing and precision;
        embeddings cached under one identity are reused only by the same identity.
    checkpoint : str or None
        Absolute path of the weights file given by the user.
    precision : {"fp32", "fp16", "bf16"}
    random_init : bool
        Random weights (tests only).
    preprocess_cfg : dict
        Image size, mean, std, interpolation, resize mode.
    registered : bool
        True for names from :func:`add_clip_model`.
    """

    model: Any
    preprocess: Callable[[Any], Any]
    tokenizer: Callable[[list[str]], Any]
    device: str
    name: str
    pretrained: str | None
    identity: str
    checkpoint: str | None = None
    precision: str = "fp32"
    random_init: bool = False
    preprocess_cfg: dict[str, Any] = field(default_factory=dict)
    registered: bool = False

    @property
    def dim(self) -> int:
        """Embedding dimension ``d``."""
        visual = getattr(self.model, "visual", None)
        out = getattr(visual, "output_dim", None)
        if isinstance(out, int):
            return out
        size = self.preprocess_cfg.get("size", 224)
        size = size if isinstance(size, (list, tuple)) else (size, size)
        import torch

        return int(self.encode_images(torch.zeros(1, 3, *size)).shape[1])

    def _dtype(self) -> Any:
        """Input dtype for the image tower: the precision's, as open_clip casts inputs.

        (Not the first parameter's: open_clip keeps ``logit_scale`` and a few other
        top-level parameters in float32 when it converts a model to fp16/bf16.)
        """
        import torch

        return getattr(torch, _TORCH_DTYPE[self.precision])

    def encode_images(self, pixels: Any) -> np.ndarray:
        """Embed a batch of preprocessed images.

        Parameters
        ----------
        pixels : torch.Tensor or ndarray of shape (b, 3, H, W)

        Returns
        -------
        ndarray of float32, shape (b, d)
            L2-normalised.
        """
        import torch

        x = torch.as_tensor(pixels).to(self.device, dtype=self._dtype())
        with torch.inference_mode():
            f = self.model.encode_image(x).float()
        f = f / f.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return f.cpu().numpy().astype(np.float32, copy=False)

    def encode_text(self, texts: list[str], batch_size: int = 256) -> np.ndarray:
        """Embed texts with the text tower.

        Returns
        -------
        ndarray of float32, shape (len(texts), d)
            L2-normalised.
        """
        import torch

        texts = [str(t) for t in texts]
        out = []
        with torch.inference_mode():
            for s in range(0, len(texts), batch_size):
                tokens = self.tokenizer(texts[s : s + batch_size]).to(self.device)
                f = self.model.encode_text(tokens).float()
                f = f / f.norm(dim=-1, keepdim=True).clamp_min(1e-12)
                out.append(f.cpu().numpy().astype(np.float32, copy=False))
        if not out:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.concatenate(out)

    def spec(self) -> dict[str, Any]:
        """What ``run.json`` records; :func:`load_clip_from_spec` rebuilds the model from it."""
        return {
            "name": self.name,
            "pretrained": self.pretrained,
            "checkpoint": self.checkpoint,
            "random_init": self.random_init,
            "precision": self.precision,
            "registered": self.registered,
            "identity": self.identity,
            "preprocess": self.preprocess_cfg,
        }


# --------------------------------------------------------------------------- registry

#: ``factory(*, device: str, precision: str) -> ClipModel``
ClipFactory = Callable[..., ClipModel]
_REGISTRY: dict[str, ClipFactory] = {}


def add_clip_model(name: str, factory: ClipFactory) -> None:
    """Register a CLIP backbone under ``name``.

    Parameters
    ----------
    name : str
        What ``load_clip(name)`` and ``--clip NAME`` accept.
    factory : callable
        ``factory(*, device, precision)`` returning a :class:`ClipModel`, or a
        ``(model, preprocess, tokenizer)`` tuple (identity then hashes the weights).
    """
    if not isinstance(name, str) or not name.strip():
        raise fail(f"CLIP name must be a non-empty string, got {name!r}")
    if not callable(factory):
        raise TypeError(f"factory for CLIP {name!r} must be callable")
    _REGISTRY[name] = factory


def default_pretrained(
    name: str, pretrained: str | None, *, checkpoint: Any = None, random_init: bool = False
) -> str | None:
    """The pretrained tag to use: ``pretrained`` if given, else :data:`DEFAULT_PRETRAINED`
    for an open_clip architecture name without local weights, else None (a registered
    CLIP, a config ``.json`` or ``local-dir:`` folder has its own weights)."""
    if pretrained is not None or checkpoint is not None or random_init:
        return pretrained
    is_arch = (
        name not in _REGISTRY
        and not name.lower().endswith(".json")
        and not name.startswith("local-dir:")
    )
    return DEFAULT_PRETRAINED if is_arch else None


def list_clip_models() -> list[str]:
    """Registered CLIP names (open_clip's own are in ``open_clip.list_pretrained()``)."""
    return sorted(_REGISTRY)


def _world_factory(*, device: str, precision: str) -> Any:
    """The built-in world's CLIP: its open_clip config and shipped weights file."""
    try:
        from failscope.world.clip import WORLD_CLIP_CONFIG, WORLD_CLIP_WEIGHTS
    except ImportError as exc:
        raise fail(f"the built-in world CLIP is not available ({exc})") from None
    if not Path(WORLD_CLIP_WEIGHTS).is_file():
        raise fail(
            f"the world CLIP weights are missing ({WORLD_CLIP_WEIGHTS}); train them with "
            "`python -m failscope.world.clip.train`"
        )
    return _load_open_clip(
        str(WORLD_CLIP_CONFIG),
        None,
        checkpoint=WORLD_CLIP_WEIGHTS,
        device=device,
        precision=precision,
        random_init=False,
        cache_dir=None,
    )


add_clip_model("world", _world_factory)


def _from_factory(name: str, *, device: str, precision: str) -> ClipModel:
    obj = _REGISTRY[name](device=device, precision=precision)
    if isinstance(obj, ClipModel):
        obj.registered = True
        obj.name = name
        return obj
    if isinstance(obj, tuple) and len(obj) == 3:
        model, preprocess, tokenizer = obj
    elif all(hasattr(obj, a) for a in ("model", "preprocess", "tokenizer")):
        model, preprocess, tokenizer = obj.model, obj.preprocess, obj.tokenizer
    else:
        raise TypeError(
            f"CLIP factory {name!r} returned {type(obj).__name__}; expected a ClipModel "
            "or (model, preprocess, tokenizer)"
        )
    model = model.to(device).eval()
    pp_cfg = _preprocess_cfg(model)
    identity = _hash(
        {"registered": name, "weights": state_dict_sha256(model), "preprocess": pp_cfg}
    )
    return ClipModel(
        model=model,
        preprocess=preprocess,
        tokenizer=tokenizer,
        device=device,
        name=name,
        pretrained=None,
        identity=identity,
        precision=_PRECISION_OF.get(str(_main_dtype(model)), precision),
        preprocess_cfg=pp_cfg,
        registered=True,
    )


_PRECISION_OF = {"torch.float32": "fp32", "torch.float16": "fp16", "torch.bfloat16": "bf16"}
_TORCH_DTYPE = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def _main_dtype(model: Any) -> Any:
    """The floating dtype that holds most of ``model``'s parameter elements."""
    counts: dict[Any, int] = {}
    for p in model.parameters():
        if p.is_floating_point():
            counts[p.dtype] = counts.get(p.dtype, 0) + p.numel()
    return max(counts, key=counts.__getitem__) if counts else None


def _preprocess_cfg(model: Any) -> dict[str, Any]:
    cfg = getattr(getattr(model, "visual", None), "preprocess_cfg", None) or {}
    return json.loads(json.dumps(dict(cfg), default=str))


# --------------------------------------------------------------------------- loading


def resolve_device(device: str | None = None) -> str:
    """``device`` if given, else ``"cuda"``, ``"mps"`` or ``"cpu"``, the first available."""
    from failscope.data.models import resolve_device as _resolve

    return _resolve(device)


def _hf_cache_dir() -> str:
    env = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if env:
        return os.path.expanduser(env)
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface"
    )
    return os.path.join(os.path.expanduser(home), "hub")


def _hf_cached_file(repo: str, filename: str, hub_dir: str) -> str | None:
    """A file of a Hugging Face hub repo in the local hub cache, or None (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    hit = try_to_load_from_cache(repo, filename, cache_dir=hub_dir)
    return hit if isinstance(hit, str) and os.path.isfile(hit) else None


def is_offline(offline: bool = False) -> bool:
    """True if ``offline`` or the environment says so (``HF_HUB_OFFLINE=1``)."""
    env = os.environ.get("HF_HUB_OFFLINE", "").strip().upper()
    return bool(offline) or env in ("1", "ON", "YES", "TRUE")


def _fetch_command(model: str, pretrained: str | None, cache_dir: str | None) -> str:
    """The shell command that fetches a CLIP's weights into open_clip's cache."""
    args = [repr(model)]
    if pretrained:
        args.append(f"pretrained={pretrained!r}")
    if cache_dir:
        args.append(f"cache_dir={str(cache_dir)!r}")
    return f'python -c "import open_clip; open_clip.create_model_and_transforms({", ".join(args)})"'


def _download(
    fetch: Callable[[], str],
    *,
    what: str,
    looked: str,
    command: str,
    offline: bool,
) -> str:
    """Run open_clip's downloader ``fetch`` unless offline; one-line errors either way."""
    if is_offline(offline):
        raise fail(
            f"{what} are not in the local cache (looked for {looked}) and downloads are off "
            f"(--offline or HF_HUB_OFFLINE=1): fetch them with `{command}`, or pass "
            "--clip-checkpoint PATH or --clip world"
        )
    logger.info("%s are not in the local cache: downloading them (open_clip)", what)
    try:
        path = fetch()
    except Exception as exc:
        raise fail(
            f"downloading the {what} failed ({type(exc).__name__}: {exc}); check the network, "
            f"or fetch them with `{command}`, or pass --clip-checkpoint PATH"
        ) from None
    if not path or not os.path.isfile(path):
        raise fail(f"downloading the {what} gave no file ({path!r}); fetch them with `{command}`")
    return str(path)


def _hf_hub_folder(repo: str, *, cache_dir: str | None, offline: bool) -> Path:
    """The local snapshot folder (open_clip's local-dir layout) of ``hf-hub:REPO``.

    Read from the hub cache, or downloaded into it with open_clip's downloader.
    """
    from open_clip import pretrained as oc_pretrained
    from open_clip.factory import _find_checkpoint_in_dir

    hub_dir = cache_dir or _hf_cache_dir()
    config = _hf_cached_file(repo, "open_clip_config.json", hub_dir)
    if config is not None and _find_checkpoint_in_dir(Path(config).parent) is not None:
        return Path(config).parent
    kw = {
        "what": f"files of CLIP hf-hub:{repo}",
        "looked": f"{repo}/open_clip_config.json and weights in {hub_dir}",
        "command": _fetch_command(f"hf-hub:{repo}", None, cache_dir),
        "offline": offline,
    }
    config = _download(
        lambda: oc_pretrained.download_pretrained_from_hf(
            repo, filename="open_clip_config.json", cache_dir=cache_dir
        ),
        **kw,
    )
    _download(lambda: oc_pretrained.download_pretrained_from_hf(repo, cache_dir=cache_dir), **kw)
    return Path(config).parent


def find_cached_weights(
    pretrained_cfg: dict[str, Any], *, cache_dir: str | None = None
) -> tuple[str | None, list[str]]:
    """Locate a pretrained tag's weights in the local caches without any network call.

    Returns
    -------
    path : str or None
        The cached weights file, or None if it is not cached.
    looked : list of str
        Where it was looked for (for the error message).
    """
    looked: list[str] = []
    if pretrained_cfg.get("file"):
        f = str(pretrained_cfg["file"])
        return (f, looked) if os.path.isfile(f) else (None, [f])
    hf = pretrained_cfg.get("hf_hub")
    if hf:
        from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

        repo, filename = os.path.split(hf)  # "org/repo/" -> ("org/repo", "")
        filename = filename or HF_WEIGHTS_NAME
        names = [filename]
        if filename == HF_WEIGHTS_NAME:
            names.insert(0, HF_SAFE_WEIGHTS_NAME)
        elif filename.endswith((".bin", ".pth")):
            names.insert(0, filename[:-4] + ".safetensors")
        hub_dir = cache_dir or _hf_cache_dir()
        for fn in names:
            hit = _hf_cached_file(repo, fn, hub_dir)
            if hit is not None:
                return hit, looked
        looked.append(f"{repo}/{filename} in {hub_dir}")
    url = pretrained_cfg.get("url")
    if url:
        target = os.path.join(
            cache_dir or os.path.expanduser("~/.cache/clip"), os.path.basename(url)
        )
        if os.path.isfile(target):
            return target, looked
        looked.append(target)
    return None, looked


_PREPROCESS_KEYS = ("size", "mean", "std", "interpolation", "resize_mode", "fill_color")


def load_clip(
    model: str = DEFAULT_CLIP,
    pretrained: str | None = DEFAULT_PRETRAINED,
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    device: str | None = None,
    precision: str | None = None,
    random_init: bool = False,
    cache_dir: str | None = None,
    offline: bool = False,
) -> ClipModel:
    """Load a CLIP backbone, downloading pretrained weights on first use (open_clip's way).

    Parameters
    ----------
    model : str, default="ViT-B-32"
        A registered name (e.g. ``"world"``), an open_clip architecture,
        ``hf-hub:ORG/REPO``, a path to an open_clip config ``.json``, or
        ``local-dir:FOLDER``.
    pretrained : str or None, default="laion2b_s34b_b79k"
        open_clip pretrained tag (ignored for ``hf-hub:``/``local-dir:`` names). With
        ``checkpoint`` it only selects the tag's preprocessing (if it is a known tag).
    checkpoint : path, optional
        Local weights file (state_dict, ``.pt``/``.bin``/``.safetensors``).
    device : str, optional
        Default: cuda, then mps, then cpu.
    precision : {"fp32", "fp16", "bf16"}, optional
        Default fp16 on cuda, else fp32.
    random_init : bool, default=False
        Allow random weights when ``pretrained`` and ``checkpoint`` are None (tests
        only; seeded, so the same random model is rebuilt).
    cache_dir : str, optional
        Where open_clip's downloads live (default: the HF hub cache and ``~/.cache/clip``).
    offline : bool, default=False
        Never download (also when ``HF_HUB_OFFLINE=1``): weights must be cached.

    Returns
    -------
    ClipModel

    Raises
    ------
    InputError
        Unknown model or tag; weights not cached while offline, or a failed download
        (one line naming the model, tag, where it looked, the command that fetches
        them, and ``--clip-checkpoint PATH`` / ``--clip world``).
    """
    device = resolve_device(device)
    precision = precision or ("fp16" if device.startswith("cuda") else "fp32")
    check_choice(precision, PRECISIONS, name="precision")
    if isinstance(model, ClipModel):
        return model
    name = str(model)
    if name in _REGISTRY:
        if checkpoint is not None:
            raise fail(f"--clip-checkpoint does not apply to the registered CLIP {name!r}")
        return _from_factory(name, device=device, precision=precision)
    return _load_open_clip(
        name,
        pretrained,
        checkpoint=checkpoint,
        device=device,
        precision=precision,
        random_init=random_init,
        cache_dir=cache_dir,
        offline=offline,
    )


def _resolve_arch(name: str, *, cache_dir: str | None, offline: bool) -> tuple[str, str]:
    """(open_clip model name, architecture description hashed into the identity).

    ``hf-hub:ORG/REPO`` resolves to ``local-dir:`` its snapshot in the hub cache.
    """
    import open_clip

    if name.startswith("hf-hub:"):
        repo = name[len("hf-hub:") :].strip("/")
        if repo.count("/") != 1 or not all(repo.split("/")):
            raise fail(f"--clip {name} must name a hub repository as hf-hub:ORG/REPO")
        name = f"local-dir:{_hf_hub_folder(repo, cache_dir=cache_dir, offline=offline)}"
    if name.startswith("local-dir:"):
        folder = Path(name[len("local-dir:") :])
        cfg = folder / "open_clip_config.json"
        if not cfg.is_file():
            raise fail(f"--clip {name}: {cfg} not found (open_clip's local-dir layout)")
        return f"local-dir:{folder.resolve()}", file_sha256(cfg)
    if name.lower().endswith(".json"):
        path = check_file(name, what="CLIP config").resolve()
        try:
            cfg = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise fail(f"CLIP config {path} is not valid JSON ({exc})") from None
        if not all(k in cfg for k in ("embed_dim", "vision_cfg", "text_cfg")):
            raise fail(f"CLIP config {path} needs the keys embed_dim, vision_cfg and text_cfg")
        if open_clip.factory.get_model_config(path.stem) != cfg:
            open_clip.add_model_config(path)  # registers it under its file stem
        return path.stem, _hash(cfg)
    if name not in open_clip.list_models():
        models = open_clip.list_models()
        raise fail(
            f"unknown CLIP {name!r}: not registered ({', '.join(list_clip_models())}), not one of "
            f"open_clip's {len(models)} models (e.g. {', '.join(models[:3])}), not a config .json"
        )
    return name, name


def _load_open_clip(
    name: str,
    pretrained: str | None,
    *,
    checkpoint: str | os.PathLike[str] | None,
    device: str,
    precision: str,
    random_init: bool,
    cache_dir: str | None,
    offline: bool = False,
) -> ClipModel:
    import open_clip
    import torch

    arch, arch_id = _resolve_arch(name, cache_dir=cache_dir, offline=offline)
    local_dir = arch.startswith("local-dir:")
    weights_path: str | None = None
    overlay: dict[str, Any] = {}
    tag = pretrained
    if checkpoint is None and pretrained and os.path.isfile(pretrained):
        checkpoint, tag = pretrained, None
    if checkpoint is not None:
        ck = check_file(checkpoint, what="CLIP checkpoint").resolve()
        weights_path, weights_id = str(ck), f"sha256:{file_sha256(ck)}"
        tag_cfg = open_clip.get_pretrained_cfg(arch, tag) if tag and not local_dir else {}
        overlay = {k: tag_cfg[k] for k in _PREPROCESS_KEYS if k in tag_cfg}
        tag = tag if tag_cfg else None
    elif local_dir:
        from open_clip.factory import _find_checkpoint_in_dir

        found = _find_checkpoint_in_dir(Path(arch[len("local-dir:") :]))
        if found is None:
            raise fail(f"--clip {name}: no weights file in the folder")
        weights_id, tag = f"sha256:{file_sha256(found)}", None
    elif pretrained:
        tag_cfg = open_clip.get_pretrained_cfg(arch, pretrained)
        if not tag_cfg:
            tags = open_clip.list_pretrained_tags_by_model(arch)
            raise fail(
                f"unknown pretrained tag {pretrained!r} for CLIP {arch} (known: "
                f"{', '.join(tags) or 'none'}); or pass --clip-checkpoint PATH"
            )
        weights_path, looked = find_cached_weights(tag_cfg, cache_dir=cache_dir)
        if weights_path is None:
            weights_path = _download(
                lambda: open_clip.download_pretrained(tag_cfg, cache_dir=cache_dir),
                what=f"weights of CLIP {arch} pretrained={pretrained!r}",
                looked="; ".join(looked),
                command=_fetch_command(arch, pretrained, cache_dir),
                offline=offline,
            )
        weights_id = f"tag:{arch}/{pretrained}"
        overlay = {k: tag_cfg[k] for k in _PREPROCESS_KEYS if k in tag_cfg}
    else:
        if not random_init:
            raise fail(
                f"CLIP {arch} with pretrained=None would have random weights; pass a pretrained "
                "tag, --clip-checkpoint PATH, or --clip-random-init (tests only)"
            )
        logger.warning("CLIP %s has RANDOM weights (random_init=True; for tests only)", arch)
        weights_id = f"random-init:seed{RANDOM_INIT_SEED}"
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_INIT_SEED)
            model = open_clip.create_model(
                arch,
                pretrained=None if local_dir else weights_path,
                precision=precision,
                device=device,
                pretrained_image=False,
                pretrained_text=False,
                force_preprocess_cfg=overlay or None,
                require_pretrained=weights_path is not None,
                weights_only=True,
                cache_dir=cache_dir,
            )
        tokenizer = open_clip.get_tokenizer(arch)
    except Exception as exc:
        source = weights_path or ("random init" if random_init else "its folder")
        msg = " ".join(str(exc).split())[:300]
        raise fail(f"cannot build CLIP {arch} from {source}: {type(exc).__name__}: {msg}") from None
    model.eval()
    pp_cfg = _preprocess_cfg(model)
    from open_clip.transform import PreprocessCfg, image_transform_v2

    preprocess = image_transform_v2(PreprocessCfg(**model.visual.preprocess_cfg), is_train=False)
    identity = _hash(
        {"arch": arch_id, "weights": weights_id, "preprocess": pp_cfg, "precision": precision}
    )
    shown = str(Path(name).resolve()) if name.lower().endswith(".json") else name
    return ClipModel(
        model=model,
        preprocess=preprocess,
        tokenizer=tokenizer,
        device=device,
        name=shown,
        pretrained=tag,
        identity=identity,
        checkpoint=weights_path if checkpoint is not None else None,
        precision=precision,
        random_init=weights_id.startswith("random-init"),
        preprocess_cfg=pp_cfg,
    )


def load_clip_from_spec(
    spec: Any, *, device: str | None = None, precision: str | None = None
) -> ClipModel:
    """Rebuild the CLIP recorded by :meth:`ClipModel.spec` (a ``ClipInfo`` or its JSON).

    Logs a warning if the rebuilt model's identity differs (other weights file
    contents or precision), since its embeddings would not match the cached ones.
    """
    from failscope.run.schema import ClipInfo

    info = spec if isinstance(spec, ClipInfo) else ClipInfo.from_json(spec, where="CLIP spec")
    if info.registered:
        clip = load_clip(info.name, None, device=device, precision=precision)
    else:
        clip = load_clip(
            info.name,
            info.pretrained,
            checkpoint=info.checkpoint,
            device=device,
            precision=precision,
            random_init=info.random_init,
        )
    if clip.identity != info.identity:
        logger.warning(
            "CLIP %s rebuilt with identity %s, the run recorded %s (weights or precision differ)",
            clip.name,
            clip.identity[:12],
            info.identity[:12],
        )
    return clip


# --------------------------------------------------------------------------- the cache


def embedding_cache_folder(cache_dir: str | os.PathLike[str], clip: ClipModel) -> Path:
    """Folder of ``clip``'s cached embeddings inside ``cache_dir``."""
    return Path(cache_dir) / f"embeddings-{clip.identity[:16]}"


def embedding_cache(cache_dir: str | os.PathLike[str], clip: ClipModel) -> RowCache:
    """``clip``'s embedding cache in ``cache_dir``: ``embeddings.npy`` (n, d) float32 rows."""
    return RowCache(
        embedding_cache_folder(cache_dir, clip),
        identity=clip.identity,
        row_shape=(clip.dim,),
        dtype=np.float32,
        data_file="embeddings.npy",
        format=CACHE_FORMAT,
        meta={"dim": clip.dim, "clip": clip.spec()},
        what="embedding cache",
    )


def embed_dataset(
    dataset: Any,
    clip: ClipModel,
    *,
    cache_dir: str | os.PathLike[str],
    batch_size: int = 64,
    num_workers: int = 0,
    progress: Progress | None = None,
    flush_seconds: float = 5.0,
    cache_key: str = "stat",
) -> tuple[np.memmap, list[dict[str, Any]]]:
    """Embed every image of ``dataset``, reusing and extending the on-disk cache.

    Parameters
    ----------
    dataset : failscope.data.ImageDataset
    clip : ClipModel
    cache_dir : path
        Parent folder of the cache (one sub-folder per CLIP identity).
    batch_size : int, default=64
    num_workers : int, default=0
        DataLoader workers decoding images.
    progress : callable(done, total), optional
        Called with the number of finished rows (cached ones included).
    flush_seconds : float, default=5.0
        How often finished rows are flushed and marked done; a killed process loses at
        most this much work (an exception loses none).
    cache_key : {"stat", "content"}, default="stat"
        What identifies a file version in the cache: its (path, size, mtime), or a hash
        of its bytes (also sees an edit that keeps size and mtime; reads every file).

    Returns
    -------
    embeddings : numpy.memmap of float32, shape (n, d)
        Read-only, row i = example i, L2-normalised; NaN rows for skipped images.
    skipped : list of dict
        ``{"id", "path", "reason"}`` for images that could not be read.
    """
    cache = embedding_cache(cache_dir, clip)
    with cache.open(dataset.file_keys(cache_key), flush_seconds=flush_seconds) as rows:
        skipped = fill_rows(
            rows, dataset, clip.preprocess,
            lambda pixels, ids: _encode_batch(clip, pixels, ids, dataset),
            batch_size=batch_size, num_workers=num_workers, progress=progress,
        )  # fmt: skip
        return rows.read(), skipped


def _encode_batch(clip: ClipModel, pixels: Any, ids: np.ndarray, dataset: Any) -> np.ndarray:
    """``clip.encode_images(pixels)``; a failure names the CLIP and the batch's files."""
    from failscope.data.datasets import _first_files

    try:
        return clip.encode_images(pixels)
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:  # torch's errors
        raise fail(
            f"CLIP {clip.name} failed on a batch of {len(ids)} images "
            f"({_first_files(dataset, ids)}): {type(exc).__name__}: {exc}"
        ) from None


def load_embeddings(
    path: str | os.PathLike[str],
    n_examples: int,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
) -> np.ndarray:
    """Open precomputed embeddings (``.npy``, row i = example i) as a float32 memory map.

    Other dtypes are converted chunk by chunk into ``cache_dir`` (or next to the file).

    Raises
    ------
    InputError
        Empty, truncated or not a ``.npy``; not 2-D; or a row count other than
        ``n_examples`` (both named).
    """
    from numpy.lib.format import open_memmap

    from failscope.run._io import atomic_write

    arr = open_npy(path, what="embeddings file")
    p = Path(path)
    if arr.ndim != 2:
        raise fail(f"embeddings file {p} must be 2-D (n_examples, dim), got shape {arr.shape}")
    if arr.shape[0] != n_examples:
        raise fail(
            f"embeddings file {p} has {arr.shape[0]} rows but the dataset has {n_examples} examples"
        )
    if arr.dtype == np.float32:
        return arr
    if arr.dtype.kind not in "fiu":
        raise fail(f"embeddings file {p} holds {arr.dtype}; expected floats")
    st = p.stat()
    key = hashlib.sha256(f"{p.resolve()}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()
    out = Path(cache_dir or p.parent) / f"embeddings-f32-{key[:16]}.npy"
    if not out.is_file():

        def convert(tmp: Path) -> None:
            dst = open_memmap(tmp, mode="w+", dtype=np.float32, shape=arr.shape)
            for s in range(0, arr.shape[0], 65536):
                dst[s : s + 65536] = arr[s : s + 65536]
            dst.flush()

        atomic_write(out, convert)
    return np.load(out, mmap_mode="r", allow_pickle=False)
