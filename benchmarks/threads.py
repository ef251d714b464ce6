"""torch threads in ``failscope discover``'s predict and embed passes, side by side.

Writes ``--images`` synthetic 256 px PNGs (3 classes), a randomly initialised
torchvision ResNet-18 as the audited model and open_clip's ViT-B-32 with random
weights as CLIP (speed does not depend on the weights), then runs the real
``failscope discover --threads T --num-workers W`` in a subprocess for each
combination, on an idle machine and on a busy one (a process spinning on one core
beside it, as when other jobs share the machine). Each run starts with an empty
embedding cache; times are ``run.json["timings"]`` of the predict and embed stages.
The ratio column divides by torch's own default (one thread per physical core) in
the same setting, so < 1 means faster than torch's default; "auto" marks the
number ``failscope._threads.default_threads`` picks.

Usage::

    python benchmarks/threads.py                     # 64 images, threads 1 and all cores
    python benchmarks/threads.py --images 256 --threads 1 2 4 --workers 0 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPIN = "while True:\n    pass\n"


def write_data(root: Path, n: int) -> tuple[Path, Path]:
    """``n`` smooth random PNGs with a manifest, and a random ResNet-18 checkpoint."""
    import numpy as np
    import pandas as pd
    import torch
    import torchvision
    from PIL import Image

    rng = np.random.default_rng(0)
    rows = []
    (root / "img").mkdir(parents=True)
    for i in range(n):
        small = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((256, 256), Image.BILINEAR)
        path = f"img/{i:04d}.png"
        img.save(root / path)
        rows.append({"path": path, "label": f"c{i % 3}", "split": "val"})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    torch.manual_seed(0)
    ck = root / "resnet18.pt"
    torch.save(torchvision.models.resnet18(num_classes=3).state_dict(), ck)
    return root / "manifest.csv", ck


def physical_cores() -> int:
    """torch's default intra-op thread count (one per physical core)."""
    import torch

    return torch.get_num_threads()


def run_discover(manifest: Path, ck: Path, out: Path, threads: int, workers: int) -> dict:
    """One ``failscope discover`` in a subprocess; its predict and embed seconds."""
    cmd = [
        sys.executable, "-m", "failscope", "-q", "discover", "--data", str(manifest),
        "--model", "torchvision:resnet18", "--checkpoint", str(ck),
        "--clip", "ViT-B-32", "--clip-random-init", "--threads", str(threads),
        "--num-workers", str(workers), "--batch-size", "32", "--min-examples", "2",
        "--no-captions", "--no-report", "--out", str(out), "--cache-dir", str(out / "cache"),
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["HF_HUB_OFFLINE"] = "1"
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          env=env)  # fmt: skip
    if proc.returncode:
        raise SystemExit(f"failscope discover failed ({proc.returncode}): {proc.stderr[-2000:]}")
    t = json.loads((out / "run.json").read_text())["timings"]
    return {"predict": float(t["predict"]), "embed": float(t["embed"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--threads", type=int, nargs="+", default=None,
                        help="thread counts (default: 1 and torch's default)")  # fmt: skip
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args()

    from failscope._threads import default_threads

    torch_default = physical_cores()
    counts = sorted(set(args.threads or [1, torch_default]) | {torch_default})
    start = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        manifest, ck = write_data(Path(tmp) / "data", args.images)
        k = 0
        for load in ("idle", "busy"):
            spinner = subprocess.Popen([sys.executable, "-c", SPIN]) if load == "busy" else None
            try:
                for w in args.workers:
                    for t in counts:
                        k += 1
                        res = run_discover(manifest, ck, Path(tmp) / f"run-{k}", t, w)
                        results.append({"load": load, "workers": w, "threads": t, **res})
            finally:
                if spinner is not None:
                    spinner.kill()
                    spinner.wait()

    print(f"{args.images} images, {os.cpu_count()} CPUs, torch default {torch_default} "
          f"threads; {time.perf_counter() - start:.0f} s in all\n")  # fmt: skip
    print("| machine | workers | threads | predict (s) | embed (s) | both (s) | vs torch default |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        ref = next(x for x in results if x["load"] == r["load"] and x["workers"] == r["workers"]
                   and x["threads"] == torch_default)  # fmt: skip
        both = r["predict"] + r["embed"]
        auto = " (auto)" if r["threads"] == default_threads(r["workers"]) else ""
        ratio = both / (ref["predict"] + ref["embed"])
        print(f"| {r['load']} | {r['workers']} | {r['threads']}{auto} | {r['predict']:.1f} | "
              f"{r['embed']:.1f} | {both:.1f} | {ratio:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
