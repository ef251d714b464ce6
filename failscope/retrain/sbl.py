"""Slice-based learning (SBL) and its mixture-of-attentions (MoA) extension.

SBL (Chen et al., NeurIPS 2019; Snorkel's ``snorkel.slicing``) adds, for each slice
``k`` of ``K + 1`` (index 0 is the *base* slice, which covers every example):

* a **slice expert** ``r_k = ReLU(E_k f + e_k)``, ``E_k`` of shape ``(h, d)``;
* an **indicator head** ``g_k``, trained with binary cross-entropy against slice
  membership (the base slice's target is always 1). Snorkel's reads the backbone
  features, ``g_k = w_k . f + b_k`` (``indicator_input="features"``); with
  ``indicator_input="expert"`` it reads the slice's own expert, ``g_k = u_k . r_k + b_k``,
  which makes the indicator non-linear in ``f`` at ``h + 1`` parameters per slice
  (useful on frozen features, where a linear indicator is weak);
* a **shared predictor head** ``P`` (``Linear(h, C)``) applied to every expert, whose
  cross-entropy counts only the slice's members (a masked mean; a slice with no
  members in a batch contributes exactly 0).

An attention over slices combines the experts::

    a_sbl = softmax_k( sigmoid(g_k) * conf(P r_k) / T )
    z     = sum_k a_k r_k
    y_hat = M z                      (the master head, full cross-entropy)

With ``tie_master=True`` the master head *is* the shared predictor (``M = P``), so the
slice experts and the final prediction live in one output space and what the
predictor learns on a slice's members carries straight into the prediction.

Snorkel's combiner is binary-only (its confidence is the larger of two softmax
probabilities). For ``C`` classes this module offers ``conf="max_prob"`` (the largest
softmax probability, Snorkel's choice generalised) and ``conf="entropy"``
(``1 - H(p) / log C``); ``benchmarks/retrain_world.py`` measures both. Both lie in
[0, 1], so at Snorkel's ``T = 1`` the attention over ``K + 1`` slices is nearly
uniform; a lower ``T`` sharpens it.

MoA (Wang et al., 2021) adds a content-based attention, a scaled dot product between a
projection of the backbone representation and the slice expert representations::

    q     = Q f                                   (Q: Linear(d, h))
    a_dot = softmax_k( q . r_k / sqrt(h) )
    a     = (1 - lam) * a_sbl + lam * a_dot,      lam = sigmoid(mix_logit)

``mix_logit`` is a learned scalar initialised to ``logit(moa_mix)`` (default
``moa_mix=0.5``); with ``learn_mix=False`` it stays fixed. A convex combination of two
distributions is a distribution, so ``a`` needs no renormalisation.

Loss (weights ``w_ind``, ``w_pred``, ``w_master``)::

    L = w_ind    * mean_k  mean_n BCE_pw(g_k(f_n), m_nk)
      + w_pred   * mean_k  [ sum_n m_nk CE(P r_nk, y_n) / sum_n m_nk ]
      + w_master * mean_n  CE(M z_n, y_n)

Indicator and predictor terms are averaged over the ``K + 1`` slices so the weights
do not depend on how many slices there are. ``BCE_pw`` weights slice ``k``'s positives
by ``indicator_pos_weight[k]`` (1 unless :meth:`SliceAwareClassifier.balance_indicators`
sets it to ``n_out / n_in``). Soft memberships weight the predictor's cross-entropy; an
example with membership exactly 0 gets exactly zero gradient from that slice's
predictor term.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from failscope._validation import check_choice, check_int, fail

logger = logging.getLogger(__name__)

__all__ = ["ATTENTIONS", "CONFIDENCES", "LinearHead", "SliceAwareClassifier"]

ATTENTIONS = ("sbl", "moa")
CONFIDENCES = ("max_prob", "entropy")
INDICATOR_INPUTS = ("features", "expert")


def _check_positive(value: Any, *, name: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise fail(f"{name}={value!r} is not a number") from None
    if not math.isfinite(out) or out <= 0:
        raise fail(f"{name}={value!r} must be a positive number")
    return out


def _check_nonneg(value: Any, *, name: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise fail(f"{name}={value!r} is not a number") from None
    if not math.isfinite(out) or out < 0:
        raise fail(f"{name}={value!r} must be a number >= 0")
    return out


class _BackboneHead(nn.Module):
    """A head on an optional backbone (``self.backbone``, ``self.freeze_backbone``).

    A frozen backbone stays in eval mode (batch-norm statistics untouched) while the
    head trains, and its features are computed without gradients.
    """

    backbone: nn.Module | None
    freeze_backbone: bool

    def train(self, mode: bool = True) -> _BackboneHead:
        super().train(mode)
        if self.backbone is not None and self.freeze_backbone:
            self.backbone.eval()
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features of inputs ``x`` (identity when there is no backbone)."""
        return _backbone_features(self.backbone, x, frozen=self.freeze_backbone)


class SliceAwareClassifier(_BackboneHead):
    """Slice-aware classification head (SBL or MoA) on top of backbone features.

    Parameters
    ----------
    in_features : int
        Dimension ``d`` of the backbone features.
    n_classes : int
        Number of classes ``C`` (>= 2).
    slice_names : sequence of str, default=()
        Names of the ``K`` slices, in expert order: slice ``slice_names[k]`` is
        indicator ``k + 1`` and expert ``k + 1``. Index 0 is the base slice
        (name ``"base"``). The order is kept as given, never sorted.
    expert_dim : int, default=64
        Width ``h`` of each slice expert.
    temperature : float, default=1.0
        Temperature ``T`` of the SBL attention.
    confidence : {"max_prob", "entropy"}, default="max_prob"
        Predictor confidence used by the attention.
    attention : {"sbl", "moa"}, default="sbl"
        ``"moa"`` adds the dot-product attention (see the module docstring).
    moa_mix : float in (0, 1), default=0.5
        Initial (or fixed) weight ``lam`` of the dot-product attention.
    learn_mix : bool, default=True
        Learn ``lam`` (MoA only).
    w_ind, w_pred, w_master : float, default=1.0
        Loss weights of the indicator, slice-predictor and master terms.
    backbone : nn.Module, optional
        Maps inputs to features of shape (N, d). When None, :meth:`forward` takes
        features directly.
    freeze_backbone : bool, default=True
        Keep the backbone's weights fixed (and in eval mode).
    tie_master : bool, default=False
        Use the shared predictor head as the master head (``M = P``).
    indicator_input : {"features", "expert"}, default="features"
        What each indicator head reads: the backbone features (Snorkel) or its slice's
        expert representation.

    Attributes
    ----------
    n_slices : int
        ``K + 1``, the base slice included.
    """

    def __init__(
        self,
        *,
        in_features: int,
        n_classes: int,
        slice_names: tuple[str, ...] | list[str] = (),
        expert_dim: int = 64,
        temperature: float = 1.0,
        confidence: str = "max_prob",
        attention: str = "sbl",
        moa_mix: float = 0.5,
        learn_mix: bool = True,
        w_ind: float = 1.0,
        w_pred: float = 1.0,
        w_master: float = 1.0,
        backbone: nn.Module | None = None,
        freeze_backbone: bool = True,
        tie_master: bool = False,
        indicator_input: str = "features",
    ) -> None:
        super().__init__()
        self.tie_master = bool(tie_master)
        self.indicator_input = check_choice(
            indicator_input, INDICATOR_INPUTS, name="indicator_input"
        )
        d = check_int(in_features, name="in_features", low=1)
        c = check_int(n_classes, name="n_classes", low=2)
        h = check_int(expert_dim, name="expert_dim", low=1)
        check_choice(confidence, CONFIDENCES, name="confidence")
        check_choice(attention, ATTENTIONS, name="attention")
        names = tuple(str(n) for n in slice_names)
        if len(set(names)) != len(names) or "base" in names:
            raise fail(f"slice names must be unique and not 'base', got {list(names)}")
        if not 0.0 < float(moa_mix) < 1.0:
            raise fail(f"moa_mix={moa_mix!r} must lie in (0, 1)")
        self.in_features = d
        self.n_classes = c
        self.slice_names = names
        self.expert_dim = h
        self.temperature = _check_positive(temperature, name="temperature")
        self.confidence = confidence
        self.attention = attention
        self.moa_mix = float(moa_mix)
        self.learn_mix = bool(learn_mix)
        self.w_ind = _check_nonneg(w_ind, name="w_ind")
        self.w_pred = _check_nonneg(w_pred, name="w_pred")
        self.w_master = _check_nonneg(w_master, name="w_master")
        self.freeze_backbone = bool(freeze_backbone)

        k = len(names) + 1
        if self.indicator_input == "features":
            self.indicator = nn.Linear(d, k)  # column k is slice k's indicator head
        else:  # slice k's indicator reads expert k: weight row k of shape (h,)
            self.indicator_weight = nn.Parameter(torch.empty(k, h).uniform_(-(h**-0.5), h**-0.5))
            self.indicator_bias = nn.Parameter(torch.zeros(k))
        # All experts as one Linear(d, (K+1) * h): expert k is output block k*h:(k+1)*h.
        self.experts = nn.Linear(d, k * h)
        self.predictor = nn.Linear(h, c)  # shared by every slice
        self.master = None if self.tie_master else nn.Linear(h, c)
        if attention == "moa":
            self.query = nn.Linear(d, h)
            logit = math.log(self.moa_mix / (1.0 - self.moa_mix))
            self.mix_logit = nn.Parameter(torch.tensor(logit), requires_grad=self.learn_mix)
        # BCE weight of each indicator's positives (set from the training membership by
        # ``balance_indicators``); ones = plain BCE.
        self.register_buffer("indicator_pos_weight", torch.ones(k))
        self.backbone = backbone
        if backbone is not None and self.freeze_backbone:
            for p in backbone.parameters():
                p.requires_grad_(False)

    def balance_indicators(self, membership: torch.Tensor, *, max_weight: float = 100.0) -> None:
        """Weight each indicator's positives by ``n_out / n_in`` of the training membership.

        Rare slices otherwise get indicator probabilities far below 0.5 for their own
        members, and the attention never leaves the base slice. Clipped to
        ``[1, max_weight]``; the base slice keeps weight 1.
        """
        m = torch.as_tensor(membership, dtype=torch.float32)
        n_in = m.sum(dim=0)
        ratio = (m.shape[0] - n_in) / n_in.clamp_min(1e-6)
        w = torch.where(n_in > 0, ratio.clamp(1.0, max_weight), torch.ones_like(ratio))
        self.indicator_pos_weight.copy_(torch.cat([torch.ones(1), w]))

    # ------------------------------------------------------------------ structure
    @property
    def n_slices(self) -> int:
        """``K + 1``: the slices including the base slice."""
        return len(self.slice_names) + 1

    @property
    def all_slice_names(self) -> tuple[str, ...]:
        """``("base", *slice_names)``: the name of every indicator/expert index."""
        return ("base", *self.slice_names)

    @property
    def parameters_per_slice(self) -> int:
        """Trainable parameters each extra slice adds: an expert and an indicator head.

        ``d * h + h`` (expert) plus ``d + 1`` (indicator on features) or ``h + 1``
        (indicator on the expert); the predictor and master heads are shared.
        """
        d, h = self.in_features, self.expert_dim
        return d * h + h + (d if self.indicator_input == "features" else h) + 1

    def head_parameter_count(self) -> int:
        """Trainable parameters of the head (everything but the backbone)."""
        return sum(
            p.numel() for name, p in self.named_parameters() if not name.startswith("backbone.")
        )

    def config(self) -> dict[str, Any]:
        """Constructor arguments (without the backbone), JSON-serialisable."""
        return {
            "in_features": self.in_features,
            "n_classes": self.n_classes,
            "slice_names": list(self.slice_names),
            "expert_dim": self.expert_dim,
            "temperature": self.temperature,
            "confidence": self.confidence,
            "attention": self.attention,
            "moa_mix": self.moa_mix,
            "learn_mix": self.learn_mix,
            "w_ind": self.w_ind,
            "w_pred": self.w_pred,
            "w_master": self.w_master,
            "freeze_backbone": self.freeze_backbone,
            "tie_master": self.tie_master,
            "indicator_input": self.indicator_input,
        }

    # ------------------------------------------------------------------ forward

    def _confidence(self, logits: torch.Tensor) -> torch.Tensor:
        p = F.softmax(logits, dim=-1)
        if self.confidence == "max_prob":
            return p.max(dim=-1).values
        ent = -(p * F.log_softmax(logits, dim=-1)).sum(dim=-1)
        return 1.0 - ent / math.log(self.n_classes)

    def forward_features(self, f: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run the head on backbone features ``f`` of shape (N, d).

        Returns
        -------
        dict of tensors
            ``logits`` (N, C) from the master head; ``indicator_logits`` (N, K+1);
            ``slice_logits`` (N, K+1, C) from the shared predictor on each expert;
            ``experts`` (N, K+1, h); ``attention`` (N, K+1), rows sum to 1;
            ``attention_sbl`` and, for MoA, ``attention_dot`` (N, K+1).
        """
        reps = F.relu(self.experts(f)).view(f.shape[0], self.n_slices, self.expert_dim)
        if self.indicator_input == "features":
            ind = self.indicator(f)
        else:
            ind = (reps * self.indicator_weight).sum(dim=-1) + self.indicator_bias
        slice_logits = self.predictor(reps)
        conf = self._confidence(slice_logits)
        a_sbl = F.softmax(torch.sigmoid(ind) * conf / self.temperature, dim=1)
        out = {"indicator_logits": ind, "slice_logits": slice_logits, "experts": reps}
        out["attention_sbl"] = a_sbl
        if self.attention == "moa":
            q = self.query(f)
            a_dot = F.softmax(
                torch.einsum("nh,nkh->nk", q, reps) / math.sqrt(self.expert_dim), dim=1
            )
            lam = torch.sigmoid(self.mix_logit)
            a = (1.0 - lam) * a_sbl + lam * a_dot
            out["attention_dot"] = a_dot
        else:
            a = a_sbl
        out["attention"] = a
        z = torch.einsum("nk,nkh->nh", a, reps)
        out["logits"] = self.predictor(z) if self.tie_master else self.master(z)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (N, C) for inputs ``x`` (features when there is no backbone)."""
        return self.forward_features(self.features(x))["logits"]

    # ------------------------------------------------------------------ loss
    def loss(
        self,
        out: dict[str, torch.Tensor],
        y: torch.Tensor,
        membership: torch.Tensor,
        *,
        sample_weight: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """The SBL loss and its parts.

        Parameters
        ----------
        out : dict
            Output of :meth:`forward_features`.
        y : LongTensor of shape (N,)
        membership : Tensor of shape (N, K)
            Membership in the ``K`` named slices, in [0, 1] (the base column is added).
        sample_weight : Tensor of shape (N,), optional
            Weights of the master cross-entropy (weighted mean).

        Returns
        -------
        dict
            ``loss`` (the weighted total), ``indicator``, ``predictor``, ``master`` and
            ``predictor_per_slice`` (K+1,).
        """
        n = y.shape[0]
        if membership.shape != (n, self.n_slices - 1):
            raise fail(
                f"membership has shape {tuple(membership.shape)}, expected "
                f"({n}, {self.n_slices - 1}): one column per named slice"
            )
        m = torch.cat([membership.new_ones(n, 1), membership.to(out["logits"].dtype)], dim=1)
        ind = F.binary_cross_entropy_with_logits(
            out["indicator_logits"], m, pos_weight=self.indicator_pos_weight, reduction="none"
        )
        l_ind = ind.mean(dim=0).mean()
        k1 = self.n_slices
        ce = F.cross_entropy(
            out["slice_logits"].reshape(n * k1, -1), y.repeat_interleave(k1), reduction="none"
        ).reshape(n, k1)
        per_slice = masked_mean(ce, m)
        l_pred = per_slice.mean()
        ce_master = F.cross_entropy(out["logits"], y, reduction="none")
        if sample_weight is None:
            l_master = ce_master.mean()
        else:
            l_master = (ce_master * sample_weight).sum() / sample_weight.sum().clamp_min(1e-12)
        total = self.w_ind * l_ind + self.w_pred * l_pred + self.w_master * l_master
        return {
            "loss": total,
            "indicator": l_ind,
            "predictor": l_pred,
            "master": l_master,
            "predictor_per_slice": per_slice,
        }


def _backbone_features(
    backbone: nn.Module | None, x: torch.Tensor, *, frozen: bool
) -> torch.Tensor:
    """Penultimate features of ``x`` (see :func:`failscope.retrain.features.feature_fn`)."""
    if backbone is None:
        return x
    from failscope.retrain.features import feature_fn

    fn = feature_fn(backbone)
    if frozen:
        with torch.no_grad():
            return fn(x)
    return fn(x)


def masked_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Column-wise weighted mean ``sum_n w_nk v_nk / sum_n w_nk``, shape (K,).

    A column whose weights are all zero gives exactly 0 (not NaN), and its values get
    exactly zero gradient.
    """
    num = (values * weights).sum(dim=0)
    den = weights.sum(dim=0)
    return torch.where(den > 0, num / den.clamp_min(1e-12), torch.zeros_like(num))


class LinearHead(_BackboneHead):
    """A linear (or one-hidden-layer) classification head on backbone features.

    Parameters
    ----------
    in_features : int
    n_classes : int
    hidden : int, default=0
        0 for a linear head; otherwise ``Linear(d, hidden) + ReLU + Linear(hidden, C)``.
    backbone : nn.Module, optional
    freeze_backbone : bool, default=True
    """

    def __init__(
        self,
        *,
        in_features: int,
        n_classes: int,
        hidden: int = 0,
        backbone: nn.Module | None = None,
        freeze_backbone: bool = True,
    ) -> None:
        super().__init__()
        self.in_features = check_int(in_features, name="in_features", low=1)
        self.n_classes = check_int(n_classes, name="n_classes", low=2)
        self.hidden = check_int(hidden, name="hidden", low=0)
        self.freeze_backbone = bool(freeze_backbone)
        if self.hidden:
            self.net = nn.Sequential(
                nn.Linear(self.in_features, self.hidden),
                nn.ReLU(),
                nn.Linear(self.hidden, self.n_classes),
            )
        else:
            self.net = nn.Linear(self.in_features, self.n_classes)
        self.backbone = backbone
        if backbone is not None and self.freeze_backbone:
            for p in backbone.parameters():
                p.requires_grad_(False)

    def config(self) -> dict[str, Any]:
        """Constructor arguments (without the backbone), JSON-serialisable."""
        return {
            "in_features": self.in_features,
            "n_classes": self.n_classes,
            "hidden": self.hidden,
            "freeze_backbone": self.freeze_backbone,
        }

    def head_parameter_count(self) -> int:
        """Trainable parameters of the head (everything but the backbone)."""
        return sum(p.numel() for p in self.net.parameters())

    def init_from(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        """Start a linear head from existing weights (C, d) and bias (C,)."""
        if self.hidden:
            raise fail("only a linear head (hidden=0) can start from a linear layer")
        with torch.no_grad():
            self.net.weight.copy_(weight)
            if bias is not None:
                self.net.bias.copy_(bias)
            else:
                self.net.bias.zero_()

    def forward_features(self, f: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"logits": (N, C)}`` for features ``f`` (N, d)."""
        return {"logits": self.net(f)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (N, C)."""
        return self.net(self.features(x))

    def loss(
        self,
        out: dict[str, torch.Tensor],
        y: torch.Tensor,
        membership: torch.Tensor | None = None,
        *,
        sample_weight: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Weighted-mean cross-entropy (``membership`` is ignored)."""
        ce = F.cross_entropy(out["logits"], y, reduction="none")
        if sample_weight is None:
            loss = ce.mean()
        else:
            loss = (ce * sample_weight).sum() / sample_weight.sum().clamp_min(1e-12)
        return {"loss": loss, "master": loss}
