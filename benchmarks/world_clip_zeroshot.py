"""Zero-shot accuracy of the shipped world CLIP per attribute family and for the class.

Usage::

    python benchmarks/world_clip_zeroshot.py [--n 2000] [--weights PATH]

Renders ``n`` scenes from the ``test`` glyph pool (never seen in CLIP training)
with uniform attributes and prints one accuracy per family.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from failscope.world.clip import load_world_clip
from failscope.world.clip.train import sample_batch
from failscope.world.clip.zeroshot import zero_shot_accuracy
from failscope.world.render import glyph_pools


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--weights", default=None)
    args = parser.parse_args()
    torch.set_num_threads(2)
    model, _, tokenizer = load_world_clip(weights=args.weights)
    images, labels, attrs = sample_batch(
        args.n, pool=glyph_pools()["test"], rng=np.random.default_rng(args.seed)
    )
    for key, acc in zero_shot_accuracy(model, tokenizer, images, labels, attrs).items():
        print(f"{key:<11s} {acc:.3f}")


if __name__ == "__main__":
    main()
