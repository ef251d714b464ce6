"""Train the world CLIP contrastively on freshly rendered scenes.

Usage::

    python -m failscope.world.clip.train --out failscope/world/clip/weights.safetensors \
        --seed 0 --steps 1500 --lr 4e-3 --threads 1 --stop-after 900

Runtime: about 0.22 s per step on one free CPU core (batch 128); the shipped
weights took 196 s (``--steps 1500 --stop-after 900``). Under heavy sharing it
was 1.5-5 s per step. The shipped weights are the checkpoint written at the
step recorded in the safetensors metadata (``step``); training is
deterministic for a seed and thread count.

Every step renders a new batch from the ``train`` glyph pool (see
:func:`failscope.world.render.glyph_pools`) with uniform, independent
attributes, so the model never sees a val or test glyph of any world. Each
batch is made of groups of four scenes that share all attributes and differ in
class (so the digit itself must be learned, not only the easy attributes). Each
image gets one caption that mentions a random subset of its class and
attribute words (each in its family's phrase, see
:func:`~failscope.world.clip.zeroshot.compose_caption`). Because several images
in a batch can fit a partial caption ("a small 7"), the loss is a
multi-positive contrastive loss: the target of each row is uniform over all
captions (columns) that are true of the image, and vice versa. A second
contrastive term (as in UniCL) contrasts each image with the label prompts of
the class ("a photo of a 7", 10 prompts) and of each family ("a photo of a red
digit", one prompt per value), which bootstraps the digit identity far faster
than free captions alone on a CPU budget (without it, the class prompts
collapsed onto each other in the first few hundred steps).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from failscope.world.attributes import CLASS_NAMES, FAMILIES, FAMILY_PHRASES
from failscope.world.clip import WORLD_CLIP_NAME, register_world_clip
from failscope.world.clip.zeroshot import (
    CLASS_PROMPT,
    compose_caption,
    images_to_tensor,
    zero_shot_accuracy,
)
from failscope.world.render import (
    glyph_pools,
    load_glyphs,
    render_scenes,
    sample_uniform_attributes,
)

logger = logging.getLogger(__name__)

_MENTION_P = {
    "class": 0.9,
    "color": 0.35,
    "background": 0.35,
    "texture": 0.35,
    "size": 0.35,
    "quality": 0.35,
}
_GROUP = 4


def sample_batch(
    n: int, *, pool: np.ndarray, rng: np.random.Generator, group: int = 1
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Render ``n`` scenes with uniform classes and attributes from glyph ``pool``.

    With ``group > 1``, consecutive groups of ``group`` scenes share all their
    attributes and have distinct classes (hard negatives: only the digit tells
    them apart). Marginally, classes and attributes stay uniform.

    Returns images (n, 32, 32, 3) uint8, labels (n,) and attributes.
    """
    _, glyph_labels = load_glyphs()
    n_groups = -(-n // group)
    labels = np.concatenate([rng.permutation(len(CLASS_NAMES))[:group] for _ in range(n_groups)])[
        :n
    ]
    attrs = {
        f: np.repeat(v, group)[:n] for f, v in sample_uniform_attributes(n_groups, rng=rng).items()
    }
    pool_labels = glyph_labels[pool]
    ids = np.empty(n, dtype=np.int64)
    for cls in range(len(CLASS_NAMES)):
        rows = np.flatnonzero(labels == cls)
        ids[rows] = rng.choice(pool[pool_labels == cls], size=len(rows))
    return render_scenes(ids, attrs, rng=rng), labels, attrs


def sample_captions(
    labels: np.ndarray, attrs: dict[str, np.ndarray], *, rng: np.random.Generator
) -> tuple[list[str], dict[str, np.ndarray]]:
    """One caption per example and, per key, a boolean (n,) mask of what it mentions."""
    n = len(labels)
    mention = {k: rng.random(n) < p for k, p in _MENTION_P.items()}
    short = rng.random(n) < 0.3
    captions = []
    for i in range(n):
        words = {f: (attrs[f][i] if mention[f][i] else None) for f in FAMILIES}
        cls = CLASS_NAMES[labels[i]] if mention["class"][i] else None
        captions.append(compose_caption(cls=cls, short=bool(short[i]), **words))
    return captions, mention


def match_matrix(
    labels: np.ndarray, attrs: dict[str, np.ndarray], mention: dict[str, np.ndarray]
) -> np.ndarray:
    """(n_images, n_captions) bool: caption j is true of image i."""
    ok = ~mention["class"][None, :] | (labels[:, None] == labels[None, :])
    for f in FAMILIES:
        ok &= ~mention[f][None, :] | (attrs[f][:, None] == attrs[f][None, :])
    return ok


def _prompt_sets() -> dict[str, list[str]]:
    """Label prompts: the ten class prompts and, per family, one prompt per value."""
    sets = {"class": [CLASS_PROMPT.format(cls=c) for c in CLASS_NAMES]}
    for family, values in FAMILIES.items():
        sets[family] = [FAMILY_PHRASES[family].format(value=v, cls="digit") for v in values]
    return sets


def _prompt_loss(
    model: Any,
    prompt_tokens: dict[str, Any],
    img_f: Any,
    scale: Any,
    labels: np.ndarray,
    attrs: dict[str, np.ndarray],
) -> Any:
    """Image-to-label-prompt contrastive loss (UniCL-style), averaged over class and families."""
    import torch
    import torch.nn.functional as F

    losses = []
    for key, tokens in prompt_tokens.items():
        txt = F.normalize(model.encode_text(tokens), dim=-1)
        if key == "class":
            target = torch.from_numpy(np.asarray(labels, dtype=np.int64))
        else:
            index = {v: i for i, v in enumerate(FAMILIES[key])}
            target = torch.tensor([index[v] for v in attrs[key]], dtype=torch.long)
        losses.append(F.cross_entropy(scale * img_f @ txt.T, target))
    return torch.stack(losses).mean()


def train(
    *,
    out: Path,
    seed: int = 0,
    steps: int = 1500,
    batch_size: int = 128,
    lr: float = 4e-3,
    weight_decay: float = 0.05,
    warmup: int = 100,
    threads: int = 1,
    eval_every: int = 100,
    stop_after: int | None = None,
) -> dict[str, float]:
    """Train the world CLIP and write float16 safetensors weights to ``out``.

    The learning-rate schedule (linear warmup, cosine decay) spans ``steps``;
    ``stop_after`` ends training early on that same schedule. Weights are
    written every ``eval_every`` steps and at the end. Returns the last
    zero-shot accuracies on 1,000 renders of ``val``-pool glyphs.
    """
    import open_clip
    import torch
    from safetensors.torch import save_file

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    name = register_world_clip()
    model = open_clip.create_model(name)
    tokenizer = open_clip.get_tokenizer(name)
    pools = glyph_pools()
    eval_rng = np.random.default_rng(10_000 + seed)
    ev_imgs, ev_labels, ev_attrs = sample_batch(1000, pool=pools["val"], rng=eval_rng)

    named = list(model.named_parameters())
    decay = [p for n, p in named if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in named if not (p.ndim >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=lr,
        betas=(0.9, 0.98),
        eps=1e-6,
    )

    def lr_at(step: int) -> float:
        if step < warmup:
            return lr * (step + 1) / warmup
        return 0.5 * lr * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    prompt_tokens = {key: tokenizer(texts) for key, texts in _prompt_sets().items()}
    t0 = time.time()
    acc: dict[str, float] = {}
    for step in range(steps if stop_after is None else min(steps, stop_after)):
        model.train()
        imgs, labels, attrs = sample_batch(batch_size, pool=pools["train"], rng=rng, group=_GROUP)
        captions, mention = sample_captions(labels, attrs, rng=rng)
        target = torch.from_numpy(match_matrix(labels, attrs, mention).astype(np.float32))
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        img_f, txt_f, scale = model(images_to_tensor(imgs), tokenizer(captions))
        logits = scale * img_f @ txt_f.T
        loss_i = -(target / target.sum(1, keepdim=True) * logits.log_softmax(1)).sum(1).mean()
        loss_t = -(target / target.sum(0, keepdim=True) * logits.log_softmax(0)).sum(0).mean()
        loss = 0.5 * (loss_i + loss_t) + _prompt_loss(
            model, prompt_tokens, img_f, scale, labels, attrs
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        if (step + 1) % 50 == 0:
            logger.info(
                "step %d/%d loss %.3f (%.0fs)", step + 1, steps, loss.item(), time.time() - t0
            )
        last = step + 1 == steps or step + 1 == stop_after
        if (step + 1) % eval_every == 0 or last:
            model.eval()
            acc = zero_shot_accuracy(model, tokenizer, ev_imgs, ev_labels, ev_attrs)
            logger.info("step %d zero-shot %s", step + 1, {k: round(v, 3) for k, v in acc.items()})
            state = {
                k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()
            }
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_name(out.name + ".tmp")
            save_file(
                state,
                str(tmp),
                metadata={"model": WORLD_CLIP_NAME, "seed": str(seed), "step": str(step + 1)},
            )
            os.replace(tmp, out)
    logger.info("done in %.0fs; wrote %s", time.time() - t0, out)
    return acc


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=4e-3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--stop-after", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    train(
        out=args.out,
        seed=args.seed,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        threads=args.threads,
        stop_after=args.stop_after,
    )


if __name__ == "__main__":
    main()
