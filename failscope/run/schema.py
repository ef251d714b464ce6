"""The typed schema of a run directory (format 2).

Every JSON file of a run is one of the records below; ``Record.from_json`` checks
each key and type and fails loudly on a malformed file. Field comments are the
documentation of the format (the README's *run directory* section points here).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from failscope.run._record import Record

__all__ = [
    "ANNOTATION_LABELS",
    "EXAMPLE_COLUMNS",
    "FORMAT_VERSION",
    "Annotation",
    "Annotations",
    "AttributionFeatures",
    "AttributionsInfo",
    "Caption",
    "CaptionCheck",
    "CaptionCurve",
    "Captions",
    "ClassEntry",
    "ClipInfo",
    "EmbeddingsInfo",
    "Evaluation",
    "EvaluationRow",
    "MembershipRule",
    "ModelInfo",
    "Plant",
    "Rerank",
    "RunInfo",
    "SkippedInput",
    "SliceEntry",
    "SlicesFile",
    "Support",
    "Truth",
    "WorldInfo",
    "passes_cutoff",
]

#: Version of the run directory layout; every JSON file of a run carries it as ``format``.
FORMAT_VERSION = 2

#: Columns every ``examples.parquet`` has, in this order; dataset metadata columns follow.
EXAMPLE_COLUMNS = (
    "id",  # int, row position in the dataset, stable across stages
    "path",  # str, image path as given by the dataset
    "split",  # str, e.g. train/val/test
    "label",  # int, true class index
    "pred",  # int, predicted class index
    "correct",  # bool, pred == label
    "confidence",  # float in [0, 1], the audited model's probability of pred
    "failure_score",  # float, score of the class's top slice (rank 0); NaN without one
    "slice",  # bool, member of the class's top slice
    "slice_id",  # str or null, the highest-ranked slice of its class it belongs to
)

SliceStatus = Literal["ok", "weak"]
ClassStatus = Literal["ok", "skipped"]


# --------------------------------------------------------------------------- run.json


@dataclass(frozen=True)
class SkippedInput(Record):
    """An input that could not be used (missing, unreadable, NaN embedding...)."""

    id: int
    path: str
    reason: str


@dataclass(frozen=True)
class ModelInfo(Record):
    """The audited model as ``run.json`` records it (``failscope.data.load_model`` reads it)."""

    kind: str  # "torchscript", "torchvision", "callable", "module" or "predictions"
    spec: str | None  # file, "torchvision:ARCH", "module:function" or the predictions file
    checkpoint: str | None = None
    num_classes: int | None = None
    image_size: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    cwd: str | None = None  # where "module:function" is imported from
    trust_checkpoint: bool = False  # as given to discover; never carried to later commands
    n_outputs: int | None = None
    sha256: dict[str, str] = field(default_factory=dict)  # "spec"/"checkpoint" -> digest


@dataclass(frozen=True)
class ClipInfo(Record):
    """The CLIP that embedded the images (``failscope.embed.load_clip_from_spec`` reads it)."""

    name: str
    pretrained: str | None
    checkpoint: str | None
    random_init: bool
    precision: str
    registered: bool
    identity: str  # hash of architecture and weights; keys every cache
    preprocess: dict[str, Any]


@dataclass(frozen=True)
class EmbeddingsInfo(Record):
    """Where a run's image embeddings are and what made them."""

    path: str  # .npy (n_scored, dim), relative to the run or absolute; row j = examples row j
    dim: int
    source: Literal["clip", "file", "array"]
    file: str | None  # the user's file (source "file") or the cache file (source "clip")
    clip: ClipInfo | None  # the CLIP that embeds text and images (None: the user's file)
    keys_path: str | None = None  # shared caches outside the run: their row keys file ...
    keys_sha256: str | None = None  # ... and its hash when this run was written


@dataclass(frozen=True)
class AttributionFeatures(Record):
    """One kind of attribution-weighted features (:mod:`failscope.attribute.features`)."""

    kind: Literal["model", "clip"]  # pooled layer activations, or CLIP of the masked image
    path: str  # .npy float32 (n_scored, dim), relative to the run or absolute; row j = example j
    dim: int
    clip: str | None = None  # identity of the CLIP that embedded the masked images


@dataclass(frozen=True)
class AttributionsInfo(Record):
    """Where the audited model looks: attribution maps of every scored example.

    ``failscope.attribute.load_attributions(run)`` reads them.
    """

    method: str  # "gradcam", "saliency", "input_x_gradient" or "integrated_gradients"
    layer: str | None  # the hooked layer (Grad-CAM)
    fallback_reason: str | None  # why Grad-CAM was not used, when it was asked for as "auto"
    target: str  # what each map explains: "predicted class"
    grid: tuple[int, int]  # (h, w) of each map
    maps: str  # .npy float16 (n_scored, h, w), each map's maximum 1; relative or absolute
    features: tuple[AttributionFeatures, ...]
    identity: str  # the maps' cache identity (model, method, layer, grid)
    seconds: float  # time of the attribution pass


@dataclass(frozen=True)
class WorldInfo(Record):
    """World runs only: how the built-in world was made."""

    seed: int
    plants: tuple[str, ...]
    key: str
    root: str  # folder of the world's images, relative to the run


@dataclass(frozen=True)
class RunInfo(Record):
    """``run.json``: what was run, on what, with which settings, and how long it took."""

    format: int
    run_id: str  # random id of this run (annotations and later stages refer to it)
    command: str
    created: str  # ISO 8601, UTC
    config: dict[str, Any]  # DiscoverConfig.to_json(): every setting of the discover stage
    versions: dict[str, str | None]
    seed: int
    timings: dict[str, float]  # seconds per stage
    classes: tuple[str, ...]  # class names in index order
    n_examples: int  # rows of the dataset
    n_scored: int  # rows of examples.parquet (the rest are in `skipped`)
    splits: dict[str, int]  # scored examples per split
    fit_split: str  # the split the slicer was fitted on
    reference_split: str | None  # the split whose statistics standardised the embeddings
    reference_rows: int
    skipped: tuple[SkippedInput, ...]
    data: dict[str, Any]  # ImageDataset.spec(): how to reopen the dataset
    model: ModelInfo
    embeddings: EmbeddingsInfo
    slicer: dict[str, Any]  # {"name", "params"}: the slicer and its hyperparameters
    files: tuple[str, ...]  # everything failscope wrote here, relative; only these are deleted
    world: WorldInfo | None = None
    captions: dict[str, Any] | None = None  # caption stage settings, once captioned
    demo_timings: dict[str, float] | None = None
    warnings: tuple[str, ...] = ()  # findings about the run as a whole (e.g. tautology)
    engine: dict[str, Any] | None = None  # the Ray engine's record of its passes, if used
    attributions: AttributionsInfo | None = None  # where the audited model looks, if computed


# --------------------------------------------------------------------------- slices.json


@dataclass(frozen=True)
class Caption(Record):
    """One ranked caption at one end of a slice."""

    text: str
    score: float  # proposal score of the ranking method
    family: str | None  # vocabulary family of its phrase, if known
    word: str | None  # the phrase's key word
    fit_acc: float | None  # re-ranking accuracy on fitting-split images (None: not re-ranked)


@dataclass(frozen=True)
class Rerank(Record):
    """How the first proposals were re-ranked on fitting-split images."""

    top: int
    k: dict[str, int]  # depth of the accuracy curve per end ("failure", "success")
    split: str


@dataclass(frozen=True)
class Captions(Record):
    """A slice's ranked captions: the failure end names the slice."""

    failure: tuple[Caption, ...]
    success: tuple[Caption, ...]
    method: str
    vocabulary: str
    n_candidates: int
    reference: str  # the class prompt captions are measured against
    rerank: Rerank | None


@dataclass(frozen=True)
class CaptionCurve(Record):
    """Accuracy on a caption's nearest k images, for k = 5, 10, ..."""

    k: tuple[int, ...]
    acc: tuple[float | None, ...]


@dataclass(frozen=True)
class CaptionCheck(Record):
    """Is the caption's neighbourhood really harder? (:mod:`failscope.caption.check`)."""

    text: str
    k: tuple[int, ...]
    acc_at_k: tuple[float | None, ...]
    class_acc: float | None
    n_class: int
    k_decision: int | None
    acc_at_decision: float | None
    p_value: float | None  # hypergeometric test of the errors at k_decision
    margin: float
    confirmed: bool
    split: str
    curve: CaptionCurve
    null_p_value: float | None = None  # random captions as hard or harder (check.py)
    note: str | None = None


@dataclass(frozen=True)
class Support(Record):
    """How strongly the fitting split supports a slice."""

    test: str  # name of the significance test behind p_value
    p_value: float | None  # H0: the slice is no failure mode (None: not testable)
    alpha: float  # significance level the status was decided at
    cv_metric: str | None = None  # direction-based slices: CV metric and score
    cv_score: float | None = None
    C: float | None = None
    enrichment_p: float | None = None  # one-sided Fisher test: error rate in > out


@dataclass(frozen=True)
class MembershipRule(Record):
    """Who is in a slice: examples of its class whose slice score passes ``cutoff``."""

    score: str  # what the per-example score is (e.g. "signed distance to the direction")
    cutoff: float
    strict: bool  # member iff score > cutoff (True) or score >= cutoff (False)
    threshold: str  # the rule that set the cutoff ("zero", "quantile:Q", "topk:K", ...)
    direction: int | None = None  # row of directions.npy for direction-based slices

    def passes(self, scores: np.ndarray) -> np.ndarray:
        """Which ``scores`` pass the rule (NaN never does)."""
        return passes_cutoff(scores, self.cutoff, strict=self.strict)


def passes_cutoff(scores: np.ndarray, cutoff: float, *, strict: bool) -> np.ndarray:
    """``scores > cutoff`` (``strict``) or ``scores >= cutoff``; False for NaN."""
    scores = np.asarray(scores)
    with np.errstate(invalid="ignore"):
        hit = scores > cutoff if strict else scores >= cutoff
    return hit & np.isfinite(scores)


@dataclass(frozen=True)
class SliceEntry(Record):
    """One slice: a subset of one class's examples where the model fails."""

    id: str  # "<class index>/<rank>", e.g. "8/0"
    class_index: int
    class_name: str
    rank: int  # within its class; 0 = most severe
    slicer: str
    status: SliceStatus  # "weak": not statistically supported; shown last, never "confirmed"
    column: int  # column of slice_scores.npy holding its scores (== rank)
    size: int  # members in the fitting split
    n_errors_in: int  # audited-model errors among them (the severity)
    error_rate_in: float | None
    error_rate_out: float | None  # the rest of its class in the fitting split
    support: Support
    rule: MembershipRule
    confusion: dict[str, int]  # wrong predicted class name -> count among its fit members
    metrics: dict[str, float | None] = field(default_factory=dict)  # slicer-specific
    captions: Captions | None = None
    caption_checks: tuple[CaptionCheck, ...] | None = None

    @property
    def severity(self) -> int:
        """The audited model's mistakes inside the slice on the fitting split."""
        return self.n_errors_in


@dataclass(frozen=True)
class ClassEntry(Record):
    """One class's summary on the fitting split."""

    class_index: int
    class_name: str
    status: ClassStatus  # "skipped": the slicer could not fit it (see reason)
    reason: str | None
    n_fit: int
    n_errors_fit: int
    error_rate: float | None
    n_slices: int


@dataclass(frozen=True)
class SlicesFile(Record):
    """``slices.json``: every class and every slice, slices in (class, rank) order."""

    format: int
    classes: tuple[ClassEntry, ...]
    slices: tuple[SliceEntry, ...]


# --------------------------------------------------------------------------- annotations.json

#: A person's verdicts on a slice, as stored.
AnnotationLabel = Literal["core", "spurious", "noisy", "not-a-failure"]
ANNOTATION_LABELS: tuple[str, ...] = ("core", "spurious", "noisy", "not-a-failure")


@dataclass(frozen=True)
class Annotation(Record):
    """One person's verdict on one slice."""

    slice_id: str
    label: AnnotationLabel
    note: str | None
    updated: str  # ISO 8601, UTC
    by: str | None = None  # who (free text), if known


@dataclass(frozen=True)
class Annotations(Record):
    """``annotations.json``: the verdicts on a run's slices, one per slice at most."""

    format: int
    run_id: str  # the RunInfo.run_id it belongs to: another run's file is refused
    version: int  # bumped by every save; a save based on an older version is refused
    annotations: tuple[Annotation, ...]


# --------------------------------------------------------------------------- truth, evaluation


@dataclass(frozen=True)
class Plant(Record):
    """A planted slice of the built-in world (ground truth)."""

    name: str  # e.g. "rare_3_size_small"
    spec: str  # "KIND:CLASS:FAMILY=VALUE:RATE"
    kind: str  # "rare", "spurious" or "noisy"
    class_index: int
    class_name: str
    family: str
    value: str
    rate: float
    polarity: Literal["present", "absent"]  # "absent": the slice is the class WITHOUT value
    column: str  # boolean column of examples.parquet marking its members
    members: str  # the membership rule in words
    noisy_target: int | None  # noisy plants: the wrong training label
    n_members: dict[str, int]  # members per split


@dataclass(frozen=True)
class Truth(Record):
    """``truth.json``."""

    format: int
    seed: int
    plants: tuple[Plant, ...]


@dataclass(frozen=True)
class EvaluationRow(Record):
    """How well the discovered slices recover one planted slice."""

    plant: str
    kind: str
    class_index: int
    family: str
    value: str
    polarity: str
    n_class: int
    n_members: int
    base_rate: float | None
    acc_overall: float | None
    acc_in_slice: float | None
    matched_slice: str | None  # id of the best-matching slice of the class (by AP)
    matched_status: str | None
    distinct: bool | None  # False when another plant of the class matched the same slice
    average_precision: float | None
    precision_at: dict[str, float | None]  # "10" -> P@10
    slice_size: int
    slice_precision: float | None
    slice_recall: float | None
    caption_end: str
    top1_hit: bool | None
    top5_hit: bool | None
    top_captions: tuple[str, ...]


@dataclass(frozen=True)
class Evaluation(Record):
    """``evaluation.json``."""

    format: int
    split: str
    ks: tuple[int, ...]
    plants: tuple[EvaluationRow, ...]
    summary: dict[str, float | None]
