"""torch threads in ``failscope discover``'s predict and embed passes, side by side.

Writes ``--images`` synthetic 256 px PNGs, builds a randomly initialised torchvision
ResNet-18 as the audited model and open_clip's ViT-B-32 with random weights as CLIP
(speed does not depend on the weights), loads them once, then times the library's
own passes (``failscope.data.predict`` and ``failscope.embed.embed_dataset`` with an
empty cache, as ``discover`` runs them) under ``failscope._threads.torch_threads(T)``
for each thread count T and decoding-worker count W, on an idle machine and on a busy
one (a process spinning on one core beside it, as when other jobs share the machine).
Each setting is timed ``--repeats`` times and the fastest kept. The ratio divides by
torch's own default (one thread per physical core) in the same setting: < 1 is faster
than torch's default. "auto" marks what ``default_threads(W)`` picks.

Usage::

    python benchmarks/threads.py                   # 16 images, best of 2: < 3 min on 2 cores
    python benchmarks/threads.py --images 128 --threads 1 2 4 --workers 0 2
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPIN = "while True:\n    pass\n"


def write_data(root: Path, n: int) -> Path:
    """``n`` smooth random 256 px PNGs in 3 classes, with a manifest."""
    import numpy as np
    import pandas as pd
    from PIL import Image

    rng = np.random.default_rng(0)
    (root / "img").mkdir(parents=True)
    rows = []
    for i in range(n):
        small = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
        Image.fromarray(small).resize((256, 256), Image.BILINEAR).save(root / f"img/{i:04d}.png")
        rows.append({"path": f"img/{i:04d}.png", "label": f"c{i % 3}", "split": "val"})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root / "manifest.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--threads", type=int, nargs="+", default=None,
                        help="thread counts (default: 1 and torch's default)")  # fmt: skip
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    import torch
    import torchvision

    from failscope._threads import default_threads, torch_threads
    from failscope.data import load_dataset, model_transform, predict
    from failscope.embed import embed_dataset, load_clip

    torch_default = torch.get_num_threads()
    counts = sorted(set(args.threads or [1, torch_default]) | {torch_default})
    start = time.perf_counter()
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=3).eval()
    imagenet = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    transform = model_transform({"kind": "torchvision", "image_size": 224, **imagenet})
    clip = load_clip("ViT-B-32", None, random_init=True, device="cpu")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        ds = load_dataset(write_data(Path(tmp) / "data", args.images))

        def passes(threads: int, workers: int, k: int) -> tuple[float, float]:
            with torch_threads(threads):
                t0 = time.perf_counter()
                predict(ds, model, transform, batch_size=32, num_workers=workers, device="cpu")
                t1 = time.perf_counter()
                embed_dataset(ds, clip, cache_dir=Path(tmp) / f"cache-{k}", batch_size=32,
                              num_workers=workers)  # fmt: skip
                return t1 - t0, time.perf_counter() - t1

        passes(1, 0, -1)  # warm-up: first-call allocations and lazy imports
        k = 0
        for load in ("idle", "busy"):
            spinner = subprocess.Popen([sys.executable, "-c", SPIN]) if load == "busy" else None
            try:
                for w in args.workers:
                    for t in counts:
                        times = []
                        for _ in range(args.repeats):
                            k += 1
                            times.append(passes(t, w, k))
                        p, e = min(times, key=sum)
                        results.append({"load": load, "workers": w, "threads": t,
                                        "predict": p, "embed": e})  # fmt: skip
            finally:
                if spinner is not None:
                    spinner.kill()
                    spinner.wait()

    print(f"{args.images} images (ResNet-18 + ViT-B-32 at 224 px, batch 32), {os.cpu_count()} "
          f"CPUs, torch default {torch_default} threads, best of {args.repeats}; "
          f"{time.perf_counter() - start:.0f} s in all\n")  # fmt: skip
    print("| machine | workers | threads | predict (s) | embed (s) | both (s) | vs torch default |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        ref = next(x for x in results if x["load"] == r["load"] and x["workers"] == r["workers"]
                   and x["threads"] == torch_default)  # fmt: skip
        both = r["predict"] + r["embed"]
        ratio = both / (ref["predict"] + ref["embed"])
        auto = " (auto)" if r["threads"] == default_threads(r["workers"]) else ""
        print(f"| {r['load']} | {r['workers']} | {r['threads']}{auto} | {r['predict']:.2f} | "
              f"{r['embed']:.2f} | {both:.2f} | {ratio:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
