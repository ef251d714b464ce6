"""``retrain_run``: train every method on one run's slices and compare them on test.

Every method trains a head on the same cached, frozen backbone features of the
train split, with the same :class:`TrainConfig` (epochs, optimizer, batch order):

``erm``
    A linear head, continued from the audited model's final layer when it can be read
    (else fresh), trained with plain cross-entropy.
``upweight-hard``, ``upweight-balanced``, ``upweight-soft``
    The same linear head, trained with the flagged training examples upweighted
    (:mod:`failscope.retrain.baselines`).
``sbl``, ``moa``
    :class:`SliceAwareClassifier` with the run's discovered slices (or the user's).
    By default (``RetrainConfig.master_weighting="balanced"``) the master
    cross-entropy is weighted like ``upweight-balanced``: a hybrid of slice-based
    learning and upweighting, picked on the world's validation split. Snorkel's
    unweighted SBL is ``master_weighting="none"``.
``oracle``
    SBL with the world's planted slices (``planted_*`` columns), when there are any,
    and the same :class:`RetrainConfig` (so with the same master weighting).
``sbl-balanced``, ``moa-balanced`` (not in ``all``)
    SBL/MoA with ``master_weighting="balanced"`` whatever the config says.
``core-sbl``, ``core-moa``, ``noisy-relabel``, ``spurious-crm`` (the group ``fixes``)
    The fix of each annotation (:mod:`failscope.retrain.fixes`): SBL/MoA with only the
    slices annotated *core*; relabelling (or dropping) the disputed training labels of
    the slices annotated *noisy* (:mod:`failscope.retrain.relabel`) and retraining the
    linear head; core-risk-style training of the backbone for the slices annotated
    *spurious* (:mod:`failscope.retrain.crm`). ``all`` includes every fix that has
    annotated slices. Slices annotated *not a failure* are left out of every method's
    training slices, and so are unannotated slices whose training labels moved to
    another class (likely noisy labels, :func:`~failscope.regions.label_shift`;
    ``RetrainConfig(skip_moved_labels=False)`` keeps them).

Test metrics are computed for every method and for the audited model itself
(``"audited"``, from ``examples.parquet``'s ``pred`` column).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from failscope._validation import check_choice, fail
from failscope.retrain.fixes import FIX_METHODS, FixPlan, fix_plan
from failscope.retrain.membership import (
    MEMBERSHIP_MODES,
    SliceSet,
    column_slices,
    discovered_slice_entries,
    discovered_slices,
    mask_slices,
    planted_slices,
)
from failscope.retrain.train import TrainConfig

logger = logging.getLogger(__name__)

__all__ = ["METHODS", "METHOD_GROUPS", "RetrainConfig", "expand_methods", "retrain_run"]

METRICS_FORMAT = 2  # the run format (Run.retrain_metrics reads this version)
METHODS = (
    "erm",
    "erm-mlp",
    "upweight-hard",
    "upweight-balanced",
    "upweight-soft",
    "sbl",
    "moa",
    "oracle",
    "sbl-balanced",
    "moa-balanced",
    *FIX_METHODS,
)
METHOD_GROUPS = {
    "all": (
        "erm",
        "upweight-hard",
        "upweight-balanced",
        "upweight-soft",
        "sbl",
        "moa",
        "oracle",
    ),
    "upweight": ("upweight-hard", "upweight-balanced", "upweight-soft"),
    "fixes": FIX_METHODS,
}
SLICE_METHODS = ("sbl", "moa")
#: The noisy-label fix's changes, for a person to check (in the retrain folder).
RELABELLED = "relabelled.parquet"
MASTER_WEIGHTINGS = ("none", "balanced", "balanced-soft")


@dataclass(frozen=True)
class RetrainConfig:
    """Hyperparameters of the heads (the optimisation ones live in :class:`TrainConfig`).

    Parameters
    ----------
    expert_dim : int, default=64
        Width of each slice expert (SBL/MoA) and of the ``erm-mlp`` hidden layer.
    temperature : float, default=0.1
        SBL attention temperature (chosen on the world's validation split, see
        ``master_weighting``; Snorkel uses 1).
    confidence : {"max_prob", "entropy"}, default="max_prob"
        Predictor confidence in the SBL attention. On the world's validation split
        (world version 1, the earlier default plants ``noisy:2:color=yellow:0.9`` +
        ``rare:3:size=small:0.02``, seed 0) ``max_prob`` scored higher than ``1 - normalised
        entropy`` for SBL (discovered-slice accuracy 83.2% vs 82.5%, T=0.1, 40 epochs).
    moa_mix : float, default=0.5
        Initial weight of MoA's dot-product attention.
    w_ind, w_pred, w_master : float, default=1.0
        SBL/MoA loss weights.
    tie_master : bool, default=True
        The master head shares its weights with the slice predictor head.
    indicator_input : {"features", "expert"}, default="expert"
        What the indicator heads read (see :mod:`failscope.retrain.sbl`).
    balance_indicators : bool, default=True
        Weight each indicator's positives by ``n_out / n_in`` (rare slices).
    master_weighting : {"none", "balanced", "balanced-soft"}, default="balanced"
        Weights of SBL/MoA's master cross-entropy. ``"none"``: Snorkel's SBL.
        ``"balanced"``: like ``upweight-balanced`` (within each class, the flagged
        and the unflagged training examples each carry half of the weight; the flags
        are the hard membership, or planted membership for the oracle), a hybrid of
        slice-based learning and upweighting. ``"balanced-soft"``: the same rule with
        the training membership itself as a soft flag
        (:func:`~failscope.retrain.baselines.membership_balanced_weights`).
        Chosen with ``membership`` and ``temperature`` on the world's **validation**
        split (``benchmarks/retrain_world.py --sweep``, default plants, seeds 0-2,
        40 epochs): of 10 settings (weighting x membership x T in {0.1, 1}),
        ``balanced`` / ``hard`` / ``T=0.1`` had the highest mean validation accuracy
        on the discovered slices, averaged over SBL and MoA (82.4% vs 81.9% for the
        previous default ``none`` / ``soft`` / 0.1; audited 78.3%; world version 1),
        with validation accuracy above the audited model's. On world version 2 the
        same sweep picks this setting for MoA (82.2%) and soft membership for SBL
        (82.1% vs 81.9%); every setting is within 2.5 points.
    upweight_factor : float, default=5.0
        Weight of a flagged example in ``upweight-hard`` (and the median one in ``-soft``).
    membership : {"hard", "soft"}, default="hard"
        How discovered slices become training membership (SBL/MoA); the upweighting
        baselines always use the hard flags. ``hard`` was picked with
        ``master_weighting`` (without master weighting, ``soft`` Platt-calibrated
        membership had scored higher on the world's validation split).
    erm_init : {"audited", "fresh"}, default="audited"
        Start linear heads from the audited model's final layer, or from scratch.
    skip_moved_labels : bool, default=True
        Leave out of the slice-aware training (SBL/MoA, upweighting) every discovered
        slice that nobody annotated and whose training labels moved to a confusion
        (:func:`~failscope.regions.label_shift`). On the world's rare small 3s beside
        the noisy yellow 3s (``rare-noisy-3``, seeds 0-4) leaving the yellow 3s' expert
        out lifted MoA from 45.1% to 47.4% (SBL unchanged, 44.3%); the noisy slices
        themselves lose 2-6 points, which ``noisy-relabel`` is for.
    """

    expert_dim: int = 64
    temperature: float = 0.1
    confidence: str = "max_prob"
    moa_mix: float = 0.5
    w_ind: float = 1.0
    w_pred: float = 1.0
    w_master: float = 1.0
    tie_master: bool = True
    indicator_input: str = "expert"
    balance_indicators: bool = True
    master_weighting: str = "balanced"
    upweight_factor: float = 5.0
    membership: str = "hard"
    erm_init: str = "audited"
    skip_moved_labels: bool = True

    def __post_init__(self) -> None:
        check_choice(self.membership, MEMBERSHIP_MODES, name="membership")
        check_choice(self.erm_init, ("audited", "fresh"), name="erm_init")
        check_choice(self.master_weighting, MASTER_WEIGHTINGS, name="master_weighting")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def expand_methods(methods: str | Sequence[str]) -> list[str]:
    """Expand ``"all"``/``"upweight"`` and comma lists into method names, in order."""
    items = [methods] if isinstance(methods, str) else list(methods)
    out: list[str] = []
    for item in items:
        for name in str(item).split(","):
            name = name.strip().lower()
            if not name:
                continue
            allowed = (*METHOD_GROUPS, *METHODS)
            check_choice(name, allowed, name="method")
            for m in METHOD_GROUPS.get(name, (name,)):
                if m not in out:
                    out.append(m)
    if not out:
        raise fail("no retraining method given; use e.g. --method all")
    return out


def _noisy_info(slice_ids: Sequence[str], relab: Any, noisy: str, model: str) -> dict[str, Any]:
    return {
        "method": "noisy-relabel", "fix": "noisy", "slices": list(slice_ids), "noisy": noisy,
        "noisy_model": model, "suspects": relab.n_suspects, "heldout": relab.heldout,
        "changed": len(relab.rows), "find_seconds": round(relab.seconds, 3),
    }  # fmt: skip


def _noisy_on_images(
    run: Any,
    slice_ids: Sequence[str],
    *,
    labels: np.ndarray,
    train_rows: np.ndarray,
    mode: str,
    seed: int,
    trust_checkpoint: bool,
) -> tuple[Any, Any, dict[str, Any], Any]:
    """``noisy-relabel`` with the whole audited model: held-out copies trained from
    scratch dispute labels, then the audited model is fine-tuned on the corrected ones."""
    import torch

    from failscope.retrain.backbone import as_classifier, train_on_images
    from failscope.retrain.checkpoint import load_audited_model
    from failscope.retrain.features import iter_images
    from failscope.retrain.relabel import FINETUNE, backbone_heldout, find_label_errors

    t0 = time.perf_counter()
    images = torch.cat(list(iter_images(run)))
    n_classes = len(run.class_names)

    def load() -> Any:
        return load_audited_model(run, trust_checkpoint=trust_checkpoint)

    relab = find_label_errors(
        run, slice_ids, labels=labels, train_rows=train_rows, mode=mode,
        heldout=backbone_heldout(images, labels, load, n_classes=n_classes, seed=seed),
    )  # fmt: skip
    module = load()
    new = relab.apply(labels)[train_rows]
    kept = train_rows[new >= 0]
    model = as_classifier(module, n_classes, seed=seed)
    losses = train_on_images(model, images[torch.from_numpy(kept)], new[new >= 0],
                             config=FINETUNE, seed=seed)  # fmt: skip
    info = _noisy_info(slice_ids, relab, mode, "backbone")
    info.update(
        parameters=sum(p.numel() for p in model.parameters()), finetuned=True,
        train_seconds=round(time.perf_counter() - t0, 3), final_loss=losses[-1],
        finetune=FINETUNE.to_dict(),
    )  # fmt: skip
    return relab, model, info, images


def _with_fixes(names: list[str], requested: str | Sequence[str], plan: FixPlan) -> list[str]:
    """``names`` with the fixes ``plan`` makes possible when ``all`` was asked for, and
    without the fixes of ``fixes`` that have no annotated slice."""
    items = [requested] if isinstance(requested, str) else list(requested)
    words = {w.strip().lower() for item in items for w in str(item).split(",")}
    usable = plan.applicable()
    explicit = words & set(FIX_METHODS)
    out = [m for m in names if m not in FIX_METHODS or m in usable or m in explicit]
    if "all" in words:
        out += [m for m in usable if m not in out]
    if "fixes" in words and not usable:
        raise fail(
            f"--method fixes needs slices annotated core, spurious or noisy, and "
            f"{plan.source or 'the run (no annotations.json)'} has none; annotate some with "
            "`failscope review` or failscope.annotate"
        )
    return out


# --------------------------------------------------------------------------- evaluation


def _accuracy(pred: np.ndarray, label: np.ndarray, mask: np.ndarray) -> float | None:
    return float((pred[mask] == label[mask]).mean()) if mask.any() else None


def _eval_slices(
    run: Any, rows: np.ndarray, discovered: list[Any], planted: SliceSet | None
) -> dict[str, dict[str, np.ndarray]]:
    """Boolean masks (restricted to ``rows``) of every evaluation slice, by group.

    ``discovered``: the members of each discovered slice (its rule on its scores);
    ``planted``: the ``planted_*`` columns.
    """
    groups: dict[str, dict[str, np.ndarray]] = {"discovered": {}, "planted": {}}
    scores = np.asarray(run.slice_score_matrix())
    for e in discovered:
        groups["discovered"][e.id] = rows & run.members(e, scores)
    if planted is not None:
        for k, name in enumerate(planted.names):
            groups["planted"][name] = rows & (planted.membership[:, k] > 0)
    return groups


def _slice_metrics(
    pred: np.ndarray, labels: np.ndarray, groups: dict[str, dict[str, np.ndarray]], prefix: str
) -> dict[str, Any]:
    out: dict[str, Any] = {f"{prefix}slice_accuracy": {}}
    worst_all: list[float] = []
    for group, masks in groups.items():
        accs = {name: _accuracy(pred, labels, m) for name, m in masks.items()}
        out[f"{prefix}slice_accuracy"][group] = accs
        vals = [a for a in accs.values() if a is not None]
        out[f"{prefix}worst_{group}_accuracy"] = min(vals) if vals else None
        out[f"{prefix}mean_{group}_accuracy"] = float(np.mean(vals)) if vals else None
        if vals:
            pooled = np.any(np.stack(list(masks.values())), axis=0)
            out[f"{prefix}pooled_{group}_accuracy"] = _accuracy(pred, labels, pooled)
        worst_all += vals
    out[f"{prefix}worst_slice_accuracy"] = min(worst_all) if worst_all else None
    return out


def _method_metrics(
    pred: np.ndarray,
    labels: np.ndarray,
    split: np.ndarray,
    groups: dict[str, dict[str, np.ndarray]],
    val_groups: dict[str, dict[str, np.ndarray]],
) -> dict[str, Any]:
    """Accuracy overall, per slice and worst-slice on test (and on val, ``val_`` keys)."""
    return {
        "test_accuracy": _accuracy(pred, labels, split == "test"),
        **_slice_metrics(pred, labels, groups, ""),
        "val_accuracy": _accuracy(pred, labels, split == "val"),
        **_slice_metrics(pred, labels, val_groups, "val_"),
    }


# --------------------------------------------------------------------------- training


def _seeded(seed: int, build: Callable[[], Any]) -> Any:
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _train_method(
    method: str,
    *,
    inputs: Any,
    dim: int,
    labels: np.ndarray,
    n_classes: int,
    slices: SliceSet,
    oracle: SliceSet | None,
    flagged: np.ndarray,
    margin: np.ndarray,
    backbone: Any,
    cfg: RetrainConfig,
    train_cfg: TrainConfig,
    module: Any = None,
) -> tuple[Any, dict[str, Any]]:
    """Build and fit one method's head on the train split.

    ``inputs`` are the cached features, or the images when ``module`` (a fresh copy of
    the audited model) is given: then the backbone is fine-tuned with the head.
    """
    import torch

    from failscope.retrain.baselines import membership_balanced_weights, upweight_weights
    from failscope.retrain.sbl import LinearHead, SliceAwareClassifier
    from failscope.retrain.train import fit_head

    d = dim
    tune = {"backbone": module, "freeze_backbone": module is None}
    info: dict[str, Any] = {"method": method}
    if method in ("sbl", "moa", "oracle", "sbl-balanced", "moa-balanced"):
        use = oracle if method == "oracle" else slices
        assert use is not None  # callers drop "oracle" without planted slices

        def build() -> Any:
            return SliceAwareClassifier(
                in_features=d,
                n_classes=n_classes,
                slice_names=use.names,
                expert_dim=cfg.expert_dim,
                temperature=cfg.temperature,
                confidence=cfg.confidence,
                attention="moa" if method.startswith("moa") else "sbl",
                moa_mix=cfg.moa_mix,
                w_ind=cfg.w_ind,
                w_pred=cfg.w_pred,
                w_master=cfg.w_master,
                tie_master=cfg.tie_master,
                indicator_input=cfg.indicator_input,
                **tune,
            )

        model = _seeded(train_cfg.seed, build)
        if cfg.balance_indicators:
            model.balance_indicators(use.membership)
        weights = None
        weighting = "balanced" if method.endswith("-balanced") else cfg.master_weighting
        if weighting == "balanced-soft":
            weights = membership_balanced_weights(use.membership.max(axis=1), labels=labels)
        elif weighting == "balanced":
            flags = flagged if method != "oracle" else use.hard().any(axis=1)
            weights = upweight_weights("balanced", flagged=flags, labels=labels)
        hist = fit_head(
            model, inputs, labels, membership=use.membership, sample_weight=weights,
            config=train_cfg, on_features=module is None,
        )  # fmt: skip
        info.update(slices=list(use.names), slice_source=use.source)
        info["master_weighting"] = weighting
        info["parameters_per_slice"] = model.parameters_per_slice
    else:
        hidden = cfg.expert_dim if method == "erm-mlp" else 0
        model = _seeded(
            train_cfg.seed,
            lambda: LinearHead(in_features=d, n_classes=n_classes, hidden=hidden, **tune),
        )
        init = "fresh"
        if hidden == 0 and cfg.erm_init == "audited" and backbone.head_weight is not None:
            bias = None if backbone.head_bias is None else torch.as_tensor(backbone.head_bias)
            model.init_from(torch.as_tensor(backbone.head_weight), bias)
            init = "audited"
        weights = None
        if method.startswith("upweight-"):
            weights = upweight_weights(
                method.split("-", 1)[1],
                flagged=flagged,
                labels=labels,
                margin=margin,
                factor=cfg.upweight_factor,
            )
        hist = fit_head(
            model, inputs, labels, sample_weight=weights, config=train_cfg,
            on_features=module is None,
        )  # fmt: skip
        info["init"] = init
    info["parameters"] = model.head_parameter_count()
    info["train_seconds"] = round(hist["seconds"], 3)
    info["final_loss"] = hist["losses"][-1]
    return model, info


def _training_slices(
    run: Any,
    train_rows: np.ndarray,
    *,
    cfg: RetrainConfig,
    slice_columns: Sequence[str] | None,
    slice_mask: Any,
    only: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
) -> tuple[SliceSet, np.ndarray, np.ndarray]:
    """Train-split membership, hard flags and margins for the upweighting baselines.

    For discovered slices the flags are the hard membership (also when training uses
    soft membership) and the margin is ``failure_score - cutoff``; for user columns or
    masks the flag is membership >= 0.5 and the margin is the membership itself.
    """
    ex = run.examples
    labels = ex["label"].to_numpy()
    if slice_columns or slice_mask is not None:
        if slice_columns:
            full = column_slices(ex, list(slice_columns))
        else:
            full = mask_slices(slice_mask, n_examples=len(ex), labels=labels)
        user = full.rows(train_rows)
        m = user.membership.max(axis=1) if user.n_slices else np.zeros(len(train_rows))
        return user, m >= 0.5, m.astype(np.float32)
    which = {"only": only, "exclude": exclude}
    slices = discovered_slices(run, train_rows, mode=cfg.membership, **which)
    if not slices.n_slices:
        return slices, np.zeros(len(train_rows), bool), np.zeros(len(train_rows), np.float32)
    hard = slices if cfg.membership == "hard" else discovered_slices(run, train_rows, **which)
    scores = np.asarray(run.slice_score_matrix()[train_rows], dtype=np.float64)
    train_labels = labels[train_rows]
    margin = np.full(len(train_rows), -np.inf)
    for e in discovered_slice_entries(run, **which):  # the most inside of the class's slices
        sel = train_labels == e.class_index
        margin[sel] = np.fmax(margin[sel], scores[sel, e.column] - e.rule.cutoff)
    margin = np.nan_to_num(margin, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)
    return slices, hard.hard().any(axis=1), margin


def _moved_labels(run: Any, plan: FixPlan) -> dict[str, Any]:
    """The unannotated discovered slices whose training labels moved (likely noisy)."""
    from failscope.regions import moved_label_slices

    moved = moved_label_slices(run, skip={sid for ids in plan.slices.values() for sid in ids})
    for sid, shift in moved.items():
        logger.info(
            "slice %s: its region lacks %.0f training examples of its class and holds %.0f "
            "more labelled %s (z %.1f / %.1f); left out of the slice-aware training as "
            "likely noisy", sid, shift.missing, shift.extra, shift.confusions,
            shift.z_missing, shift.z_extra,
        )  # fmt: skip
    return moved


def retrain_run(
    run: Any,
    *,
    methods: str | Sequence[str] = "all",
    epochs: int = 40,
    seed: int = 0,
    membership: str | None = None,
    slice_columns: Sequence[str] | None = None,
    slice_mask: Any = None,
    features: Any = None,
    backbone: str = "model",
    finetune: bool = False,
    trust_checkpoint: bool = False,
    config: RetrainConfig | None = None,
    train_config: TrainConfig | None = None,
    out: str | os.PathLike[str] | None = None,
    write: bool = True,
    progress: Callable[[str], None] | None = None,
    annotations: Any = None,
    noisy: str = "relabel",
    noisy_model: str = "backbone",
    crm: Any = None,
) -> dict[str, Any]:
    """Retrain with slice-aware methods and baselines; compare them on the test split.

    Parameters
    ----------
    run : Run or path
        A discover run directory.
    methods : str or list of str, default="all"
        Names from ``METHODS`` or the groups ``"all"`` and ``"upweight"``; comma lists
        are accepted. ``"oracle"`` is skipped when the run has no planted slices.
    epochs : int, default=40
    seed : int, default=0
    membership : {"hard", "soft"}, optional
        Overrides ``config.membership`` (default ``"hard"``).
    slice_columns : list of str, optional
        Boolean columns of ``examples.parquet`` to use as slices instead of the
        discovered ones.
    slice_mask : ndarray or path, optional
        A ``.npy`` mask aligned with ``examples.parquet`` rows, used as slices.
    features : ndarray of shape (n_examples, d) or BackboneFeatures, optional
        Backbone features aligned with ``examples.parquet`` rows; default: the audited
        model's penultimate layer (cached in ``RUN/cache``).
    backbone : {"model", "clip"}, default="model"
        Without ``features``: the audited model's penultimate layer, or the run's CLIP
        image embeddings (for audited models that cannot be reloaded).
    finetune : bool, default=False
        Fine-tune the audited model's backbone with every head (on the images) instead
        of training heads on its cached, frozen features. Much slower.
    trust_checkpoint : bool, default=False
        Allow a pickled audited-model checkpoint (see ``failscope discover``); not
        carried over from ``run.json``. The model's files must still have the sha256
        ``discover`` recorded.
    config : RetrainConfig, optional
    train_config : TrainConfig, optional
        ``epochs`` and ``seed`` override its fields.
    out : path, optional
        Output folder; default ``RUN/retrain``.
    write : bool, default=True
        Write models, ``predictions.parquet`` and ``metrics.json``.
    progress : callable, optional
        Called with a short message as each method starts.
    annotations : path, Annotations or False, optional
        The verdicts that pick each slice's fix (:func:`~failscope.retrain.fixes.fix_plan`);
        default ``RUN/annotations.json`` when it exists, False to ignore it.
    noisy : {"relabel", "drop"}, default="relabel"
        What ``noisy-relabel`` does with a disputed training label.
    noisy_model : {"backbone", "head"}, default="backbone"
        ``noisy-relabel``'s models: the audited model trained on images (a held-out copy
        from scratch, then the fine-tuned fix), or linear heads on the frozen features
        (see :mod:`failscope.retrain.relabel`).
    crm : CrmConfig, optional
        Settings of ``spurious-crm`` (:class:`~failscope.retrain.crm.CrmConfig`).

    Returns
    -------
    dict
        The metrics (as written to ``metrics.json``). ``status`` is ``"ok"``, or
        ``"no-slices"`` when the run has no slice to train on (nothing is written).
    """
    from failscope.retrain.features import BackboneFeatures, audited_features, clip_features
    from failscope.run import RETRAIN_DIR, Run, load_run

    if not isinstance(run, Run):
        run = load_run(run)
    base_cfg = config or RetrainConfig()
    cfg = base_cfg if membership is None else replace(base_cfg, membership=membership)
    tc = train_config or TrainConfig()
    train_cfg = TrainConfig(**{**tc.to_dict(), "epochs": epochs, "seed": seed})
    names = expand_methods(methods)
    check_choice(noisy, ("relabel", "drop"), name="noisy")
    check_choice(noisy_model, ("backbone", "head"), name="noisy_model")
    plan = fix_plan(run, annotations)
    names = _with_fixes(names, methods, plan)
    t0 = time.perf_counter()
    user_slices = bool(slice_columns) or slice_mask is not None
    moved = {} if user_slices or not cfg.skip_moved_labels else _moved_labels(run, plan)

    ex = run.examples
    split = ex["split"].to_numpy().astype(str)
    labels = ex["label"].to_numpy(dtype=np.int64)
    n_classes = len(run.class_names)
    train_rows = np.flatnonzero(split == "train")
    if not len(train_rows):
        raise fail(f"{run.path} has no train split rows; retraining needs the train split")
    if not (split == "test").any():
        raise fail(f"{run.path} has no test split rows; retraining is evaluated on test")

    slices, flagged, margin = _training_slices(
        run, train_rows, cfg=cfg, slice_columns=slice_columns, slice_mask=slice_mask,
        exclude=(*plan.excluded, *moved),
    )  # fmt: skip
    if slices.n_slices == 0:
        _remove_outputs(Path(out) if out is not None else run.path / RETRAIN_DIR)
        msg = (
            "every discovered slice is annotated not-a-failure or has moved labels; "
            "nothing to retrain"
            if (plan.excluded or moved) and discovered_slice_entries(run)
            else "the run has no discovered slice (every class was skipped or empty); "
            "nothing to retrain"
        )
        logger.info(msg)
        return {"format": METRICS_FORMAT, "status": "no-slices", "message": msg}
    planted = planted_slices(ex)
    if "oracle" in names and planted is None:
        logger.info("no planted_* columns: skipping the oracle")
        names = [m for m in names if m != "oracle"]

    check_choice(backbone, ("model", "clip"), name="backbone")
    if progress is not None and features is None:
        progress("backbone features")
    if features is None and backbone == "clip":
        backbone = clip_features(run)
    elif features is None:
        backbone = audited_features(run, trust_checkpoint=trust_checkpoint)
    elif isinstance(features, BackboneFeatures):
        backbone = features
    else:
        backbone = BackboneFeatures(np.asarray(features, dtype=np.float32))
    feats = backbone.features
    if feats.ndim != 2 or feats.shape[0] != len(ex):
        raise fail(
            f"features have shape {feats.shape}; expected ({len(ex)}, d), one row per "
            "row of examples.parquet"
        )
    images = None
    if finetune:
        if backbone.source != "audited-model":
            raise fail("finetune needs the audited model as backbone (not --backbone clip)")
        import torch

        from failscope.retrain.features import iter_images

        images = torch.cat(list(iter_images(run)))
    t_feat = time.perf_counter() - t0

    entries = discovered_slice_entries(run)
    groups = _eval_slices(run, split == "test", entries, planted)
    val_groups = _eval_slices(run, split == "val", entries, planted)
    if slices.source in ("column", "mask"):  # the user's own slices are evaluated too
        if slice_columns:
            user = column_slices(ex, list(slice_columns))
        else:
            user = mask_slices(slice_mask, n_examples=len(ex), labels=labels)
        for g, rows in ((groups, split == "test"), (val_groups, split == "val")):
            g["user"] = {n: rows & (user.membership[:, k] >= 0.5) for k, n in enumerate(user.names)}
    results: dict[str, Any] = {
        "audited": {
            **_method_metrics(ex["pred"].to_numpy(), labels, split, groups, val_groups),
            "parameters": (
                None
                if backbone.head_weight is None
                else int(backbone.head_weight.size + (backbone.head_bias is not None) * n_classes)
            ),
        }
    }
    preds: dict[str, np.ndarray] = {}
    models: dict[str, Any] = {}
    from failscope.retrain.train import predict_logits

    def record(method: str, model: Any, info: dict[str, Any], x: Any, *, on_features: bool) -> None:
        """Keep a trained method's test-set predictions, model and metrics."""
        pred = predict_logits(model, x, on_features=on_features).argmax(axis=1)
        preds[method] = pred
        models[method] = (model, info)
        results[method] = {**_method_metrics(pred, labels, split, groups, val_groups), **info}

    inputs = feats if images is None else images
    train_inputs = inputs[train_rows]
    train_labels = labels[train_rows]
    oracle_train = None if planted is None else planted.rows(train_rows)
    relabelled = None
    for method in names:
        if progress is not None:
            progress(method)
        module = None
        if finetune:
            from failscope.retrain.checkpoint import load_audited_model

            module = load_audited_model(run, trust_checkpoint=trust_checkpoint)
        common = {
            "dim": int(feats.shape[1]), "n_classes": n_classes, "oracle": oracle_train,
            "backbone": backbone, "cfg": cfg, "train_cfg": train_cfg, "module": module,
        }  # fmt: skip
        if method == "spurious-crm":
            from failscope.retrain.crm import train_crm

            model, info, crm_inputs = train_crm(
                run, plan.slices_for(method), labels=labels, train_rows=train_rows,
                config=crm, train_config=train_cfg, trust_checkpoint=trust_checkpoint,
            )  # fmt: skip
            record(method, model, info, crm_inputs, on_features=False)
            continue
        if method == "noisy-relabel" and noisy_model == "backbone":
            relabelled, model, info, image_inputs = _noisy_on_images(
                run, plan.slices_for(method), labels=labels, train_rows=train_rows,
                mode=noisy, seed=seed, trust_checkpoint=trust_checkpoint,
            )  # fmt: skip
            record(method, model, info, image_inputs, on_features=False)
            continue
        if method == "noisy-relabel":
            from failscope.retrain.relabel import find_label_errors, head_heldout

            relabelled = find_label_errors(
                run, plan.slices_for(method), labels=labels, train_rows=train_rows,
                heldout=head_heldout(feats, labels, train_cfg, n_classes=n_classes), mode=noisy,
            )  # fmt: skip
            new_labels = relabelled.apply(labels)[train_rows]
            kept = new_labels >= 0
            model, info = _train_method(
                "erm", inputs=train_inputs[kept], labels=new_labels[kept], slices=slices,
                flagged=flagged[kept], margin=margin[kept], **common,
            )  # fmt: skip
            info.update(_noisy_info(plan.slices_for(method), relabelled, noisy, "head"))
        elif method in ("core-sbl", "core-moa"):
            core, core_flags, core_margin = _training_slices(
                run, train_rows, cfg=cfg, slice_columns=None, slice_mask=None,
                only=plan.slices_for(method), exclude=plan.excluded,
            )  # fmt: skip
            model, info = _train_method(
                method.split("-", 1)[1], inputs=train_inputs, labels=train_labels,
                slices=core, flagged=core_flags, margin=core_margin, **common,
            )  # fmt: skip
            info.update(method=method, fix="core")
        else:
            model, info = _train_method(
                method, inputs=train_inputs, labels=train_labels, slices=slices,
                flagged=flagged, margin=margin, **common,
            )  # fmt: skip
        info["finetuned"] = bool(finetune)
        record(method, model, info, inputs, on_features=not finetune)

    metrics = {
        "format": METRICS_FORMAT,
        "status": "ok",
        "run": str(run.path),
        "methods": results,
        "slices": {
            "training": {
                "source": slices.source,
                "names": list(slices.names),
                "train_members": [float(v) for v in slices.membership.sum(axis=0)],
                "moved_labels": {sid: shift.to_json() for sid, shift in moved.items()},
            },
            "evaluation": {
                g: {k: int(m.sum()) for k, m in masks.items()} for g, masks in groups.items()
            },
        },
        "config": {"train": train_cfg.to_dict(), "heads": cfg.to_dict()},
        "features": {"source": backbone.source, "dim": int(feats.shape[1])},
        "annotations": plan.to_json(),
        "seconds": {"features": round(t_feat, 3), "total": round(time.perf_counter() - t0, 3)},
    }
    if write:
        out_dir = Path(out) if out is not None else run.path / RETRAIN_DIR
        relabel_frame = None if relabelled is None else relabelled.frame(run, mode=noisy)
        _write_outputs(
            out_dir, ex=ex, split=split, preds=preds, models=models, metrics=metrics,
            relabelled=relabel_frame,
        )  # fmt: skip
        metrics["out"] = str(out_dir)
    return metrics


def _remove_outputs(out_dir: Path, keep: Sequence[str] = ()) -> None:
    """Delete this module's earlier outputs in ``out_dir`` (not in ``keep``), so that a
    re-run never leaves results that no longer describe the run."""
    if not out_dir.is_dir():
        return
    stale = [] if keep else [out_dir / "metrics.json", out_dir / "predictions.parquet"]
    if "noisy-relabel" not in keep:
        stale.append(out_dir / RELABELLED)
    for method in METHODS:
        if method not in keep:
            stale += [out_dir / "models" / f"{method}{ext}" for ext in (".json", ".safetensors")]
    for p in stale:
        if p.is_file():
            logger.info("removing stale %s", p)
            p.unlink()


def _write_outputs(
    out_dir: Path,
    *,
    ex: Any,
    split: np.ndarray,
    preds: dict[str, np.ndarray],
    models: dict[str, Any],
    metrics: dict[str, Any],
    relabelled: Any = None,
) -> None:
    import pandas as pd

    from failscope.retrain.checkpoint import save_retrained
    from failscope.run import write_json, write_parquet

    test = split == "test"
    ids = ex["id"].to_numpy()[test]
    frames = [pd.DataFrame({"id": ids, "method": "audited", "pred": ex["pred"].to_numpy()[test]})]
    for method, pred in preds.items():
        frames.append(pd.DataFrame({"id": ids, "method": method, "pred": pred[test]}))
    table = pd.concat(frames, ignore_index=True)
    table["pred"] = table["pred"].astype("int64")
    _remove_outputs(out_dir, keep=list(models))
    for method, (model, info) in models.items():
        save_retrained(model, out_dir / "models" / method, info=info)
    write_parquet(out_dir / "predictions.parquet", table)
    if relabelled is not None:
        write_parquet(out_dir / RELABELLED, relabelled)
    write_json(out_dir / "metrics.json", metrics)
