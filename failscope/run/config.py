"""The discover stage's settings: one dataclass for the CLI, the API, ``run.json`` and the docs.

:class:`DiscoverConfig` is the only place its parameters are written out. The CLI
builds ``failscope discover``'s options from the field metadata
(:mod:`failscope.cli._config`), :func:`failscope.discover` takes the same names as
keyword arguments, ``run.json["config"]`` is :meth:`DiscoverConfig.to_json`, and the
README's option table is :func:`options_markdown` (a test keeps them equal).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

from failscope.run._record import Record

__all__ = ["DEFAULT_CS", "DiscoverConfig", "options_markdown"]

#: Default C grid of the failure directions (SVM convention), 1e-3 ... 1e3.
DEFAULT_CS = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)


def _cli(help: str, *, group: str, metavar: str | None = None, **cli: Any) -> dict[str, Any]:
    """A field's command-line metadata (see :mod:`failscope.cli._config`)."""
    return {"help": help, "group": group, "metavar": metavar, **cli}


def _described(value: Any) -> Any:
    """A JSON-able stand-in for API-only objects (a module, an array, a dataset)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (list, tuple)) and all(isinstance(v, (int, float, str)) for v in value):
        return list(value)
    return f"<{type(value).__name__}>"


@dataclass(frozen=True)
class DiscoverConfig(Record):
    """Every setting of ``failscope discover`` (defaults are the CLI's).

    Objects that only the Python API accepts (an ``nn.Module`` for ``model``, an
    array for ``embeddings``, an ``ImageDataset`` for ``data``) are recorded in
    ``run.json`` as ``"<TypeName>"``.
    """

    # -- data
    data: Any = field(
        default=None,
        metadata=_cli(
            "ImageFolder tree (ROOT/<class>/ or ROOT/<split>/<class>/) or a .csv/.parquet "
            "manifest with path,label[,split] and metadata columns",
            group="data",
            metavar="PATH",
            required=True,
        ),
    )
    classes: Any = field(
        default=None,
        metadata=_cli(
            "class names in model output order (one per line, or a JSON list); default: sorted "
            "folder names / labels",
            group="data",
            metavar="FILE",
        ),
    )
    split_by: str | None = field(
        default=None,
        metadata=_cli(
            "for data without splits: 'random:F' (fraction F per class to val, rest train) or "
            "'column:NAME'; default: everything is the 'val' split",
            group="data",
            metavar="RULE",
        ),
    )
    # -- the audited model
    model: Any = field(
        default=None,
        metadata=_cli(
            "TorchScript file, 'torchvision:ARCH' (with --checkpoint) or 'module:function' "
            "returning an nn.Module",
            group="model",
            metavar="SPEC",
            exclusive="model",
        ),
    )
    predictions: Any = field(
        default=None,
        metadata=_cli(
            ".npy (labels 1-D or probabilities 2-D) or .csv/.parquet with 'pred' or prob_* "
            "columns, optionally keyed by 'path' or 'id'",
            group="model",
            metavar="FILE",
            exclusive="model",
        ),
    )
    checkpoint: str | None = field(
        default=None,
        metadata=_cli("state_dict for torchvision:/module: models", group="model", metavar="FILE"),
    )
    trust_checkpoint: bool = field(
        default=False,
        metadata=_cli(
            "allow a checkpoint that needs pickle (it can run code: trusted files only)",
            group="model",
        ),
    )
    image_size: int | None = field(
        default=None,
        metadata=_cli(
            "model input side: resize shorter side + centre crop (default 224 for torchvision, "
            "else images as stored)",
            group="model",
            metavar="S",
            type=int,
        ),
    )
    mean: tuple[float, ...] | None = field(
        default=None,
        metadata=_cli(
            "input normalisation mean (default ImageNet for torchvision, else none: "
            "inputs in [0,1])",
            group="model",
            metavar="R,G,B",
            type="floats",
        ),
    )
    std: tuple[float, ...] | None = field(
        default=None,
        metadata=_cli("input normalisation std", group="model", metavar="R,G,B", type="floats"),
    )
    # -- embeddings
    clip: Any = field(
        default=None,
        metadata=_cli(
            "registered name (world), open_clip model, open_clip config .json, or local-dir:FOLDER "
            "(default ViT-B-32; none with --embeddings)",
            group="embeddings",
            metavar="NAME",
        ),
    )
    clip_pretrained: str | None = field(
        default=None,
        metadata=_cli(
            "open_clip pretrained tag, downloaded once into open_clip's cache (default "
            "laion2b_s34b_b79k for open_clip names without --clip-checkpoint)",
            group="embeddings",
            metavar="TAG",
        ),
    )
    clip_checkpoint: str | None = field(
        default=None, metadata=_cli("local CLIP weights file", group="embeddings", metavar="FILE")
    )
    clip_random_init: bool = field(
        default=False,
        metadata=_cli("random CLIP weights (tests only; recorded in run.json)", group="embeddings"),
    )
    embeddings: Any = field(
        default=None,
        metadata=_cli(
            "precomputed embeddings .npy (n_examples, d), row i = example i",
            group="embeddings",
            metavar="FILE",
        ),
    )
    offline: bool = field(
        default=False,
        metadata=_cli(
            "never download CLIP weights (as HF_HUB_OFFLINE=1): they must be cached",
            group="embeddings",
        ),
    )
    cache_dir: str | None = field(
        default=None,
        metadata=_cli("embedding cache (default RUN/cache)", group="embeddings", metavar="DIR"),
    )
    cache_key: str = field(
        default="stat",
        metadata=_cli(
            "what identifies a cached image: stat = path, size and mtime (an edit that keeps "
            "both is not seen), content = a hash of its bytes (reads every file)",
            group="embeddings",
            choices=("stat", "content"),
        ),
    )
    # -- slices
    fit_split: str = field(
        default="val",
        metadata=_cli("split the slicer is fitted on", group="slices", metavar="NAME"),
    )
    reference_split: str | None = field(
        default="train",
        metadata=_cli(
            "split whose statistics standardise embeddings, if present",
            group="slices",
            metavar="NAME",
        ),
    )
    slicer: str = field(
        default="directions",
        metadata=_cli(
            "slicer and its settings, NAME[:key=value,...]; the names are listed in the "
            "README and by failscope.list_slicers()",
            group="slices",
            metavar="SPEC",
        ),
    )
    threshold: str = field(
        default="zero",
        metadata=_cli(
            "direction slices' membership: zero (failure side), quantile:Q or topk:K",
            group="slices",
            metavar="RULE",
        ),
    )
    cv: int = field(
        default=2, metadata=_cli("CV folds that choose C", group="slices", metavar="K", type=int)
    )
    scoring: str = field(
        default="balanced_accuracy",
        metadata=_cli(
            "CV metric",
            group="slices",
            choices=("balanced_accuracy", "roc_auc"),
        ),
    )
    solver: str = field(
        default="lssvm",
        metadata=_cli("linear classifier", group="slices", choices=("lssvm", "logistic", "svc")),
    )
    Cs: tuple[float, ...] = field(
        default=DEFAULT_CS,
        metadata=_cli(
            "grid of C values CV chooses from (SVM convention)",
            group="slices",
            metavar="C,C,...",
            type="floats",
            flag="--C-grid",
        ),
    )
    min_examples: int = field(
        default=10,
        metadata=_cli(
            "classes with fewer fitting examples get no slice",
            group="slices",
            metavar="N",
            type=int,
        ),
    )
    alpha: float = field(
        default=0.05,
        metadata=_cli(
            "significance level: a slice whose test does not reach it is marked weak",
            group="slices",
            metavar="A",
            type=float,
        ),
    )
    # -- compute
    batch_size: int = field(
        default=64, metadata=_cli("images per batch", group="compute", metavar="B", type=int)
    )
    num_workers: int = field(
        default=0,
        metadata=_cli("image-decoding worker processes", group="compute", metavar="W", type=int),
    )
    device: str | None = field(
        default=None,
        metadata=_cli(
            "cuda, mps or cpu (default: the first available)", group="compute", metavar="DEV"
        ),
    )
    threads: int | None = field(
        default=None,
        metadata=_cli(
            "torch threads of the predict and embed passes (default: half the cores, less "
            "one per decoding worker, at most 4)",
            group="compute",
            metavar="N",
            type=int,
        ),
    )
    n_jobs: int | None = field(
        default=None,
        metadata=_cli(
            "worker processes for the per-class fits (default 1; -1: every core)",
            group="compute",
            metavar="N",
            type=int,
        ),
    )
    seed: int = field(
        default=0,
        metadata=_cli(
            "seeds CV folds, random splits and samples", group="compute", metavar="N", type=int
        ),
    )
    # -- later stages
    captions: bool = field(
        default=True, metadata=_cli("name each slice with CLIP text prompts", group="output")
    )
    report: bool = field(default=True, metadata=_cli("write RUN/report.html", group="output"))
    force: bool = field(
        default=False,
        metadata=_cli(
            "write into a non-empty folder that is not a failscope run (its files are kept)",
            group="output",
        ),
    )

    def to_json(self) -> dict[str, Any]:
        """Every setting, with API-only objects replaced by ``"<TypeName>"``."""
        return {f.name: _described(getattr(self, f.name)) for f in dataclasses.fields(self)}


def _default_text(f: dataclasses.Field[Any]) -> str:
    default = f.default
    if isinstance(default, bool) or default is None:
        return "-"  # a switch, or no default
    if isinstance(default, tuple):
        return ",".join(f"{v:g}" for v in default)
    return str(default)


def options_markdown() -> str:
    """The README's table of ``failscope discover`` options, from the dataclass."""
    from failscope.cli._config import flag_of

    rows = ["| option | default | meaning |", "|---|---|---|"]
    for f in dataclasses.fields(DiscoverConfig):
        rows.append(f"| `{flag_of(f)}` | {_default_text(f)} | {f.metadata['help']} |")
    return "\n".join(rows)
