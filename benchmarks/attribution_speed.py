"""How long attribution takes: the attribution pass vs the plain prediction + CLIP passes.

On one built-in world (20,000 images, 32 px; cached under ``--workdir``) this times,
in one process with the same thread count and batch size:

* ``predict``: the audited model's plain prediction pass (``failscope.data.predict``);
* ``clip``: the world CLIP's embedding pass into an empty cache (``embed_dataset``);
* ``attribute``: :func:`failscope.attribute.compute_attributions` into an empty cache,
  which decodes every image once and computes the maps, the ``model`` features
  (Grad-CAM only) and the ``clip`` features (a CLIP pass over the masked images), for
  Grad-CAM on the eager CNN and for the saliency fallback on the TorchScript file;
* ``attribute, cached``: the same call again, every row cached.

Targets (issue 12): attribute <= 2 x (predict + clip); cached re-run >= 20x faster.

Usage::

    python benchmarks/attribution_speed.py                 # seed 0, default plants, 1 thread
    python benchmarks/attribution_speed.py --threads 2
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

TARGET_RATIO = 2.0
TARGET_SPEEDUP = 20.0


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=Path("runs/world_attribution"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()

    import torch

    from failscope.attribute import compute_attributions
    from failscope.data import load_dataset, load_model, model_spec, model_transform, predict
    from failscope.demo import default_cache_dir, world_model
    from failscope.embed import embed_dataset, load_clip
    from failscope.world import DEFAULT_PLANTS, get_audited_model, make_world, parse_plants
    from failscope.world.generate import DEFAULT_SIZES, world_key

    torch.set_num_threads(args.threads)
    key = world_key(parse_plants(list(DEFAULT_PLANTS)), seed=args.seed, sizes=DEFAULT_SIZES)
    world = make_world(DEFAULT_PLANTS, seed=args.seed, root=args.workdir / "worlds" / key)
    ts_path, _ = get_audited_model(world, cache_dir=default_cache_dir() / "world-models")
    ds = load_dataset(world.manifest_path)
    ts_spec = model_spec(str(ts_path), num_classes=10)
    eager = world_model(ts_path, slicer="attribution", audited=None)
    eager_spec = model_spec(eager["model"], num_classes=10, checkpoint=eager["checkpoint"])
    clip = load_clip("world", device="cpu")
    bs = args.batch_size
    tmp = Path(tempfile.mkdtemp(prefix="attribution-speed-"))
    try:
        preds, t_pred = _timed(lambda: predict(ds, load_model(ts_spec), model_transform(ts_spec),
                                               batch_size=bs))  # fmt: skip
        _, t_clip = _timed(lambda: embed_dataset(ds, clip, cache_dir=tmp / "emb", batch_size=bs))
        base = t_pred + t_clip
        rows = [("predict (TorchScript)", t_pred, "", ""), ("clip embeddings", t_clip, "", "")]
        for name, spec in (("Grad-CAM, eager CNN", eager_spec), ("saliency, TorchScript", ts_spec)):
            module = load_model(spec)
            cache = tmp / name.split(",")[0]

            def attribute(spec=spec, module=module, cache=cache):
                return compute_attributions(ds, module, spec, pred=preds.pred, cache_dir=cache,
                                            clip=clip, batch_size=bs)  # fmt: skip

            first, t_attr = _timed(attribute)
            again, t_again = _timed(attribute)
            assert np.array_equal(np.asarray(first.maps), np.asarray(again.maps))
            rows.append((f"attribute: {name}", t_attr, f"{t_attr / base:.2f}", ""))
            rows.append((f"attribute: {name}, cached", t_again, f"{t_again / base:.2f}",
                         f"{t_attr / t_again:.0f}x"))  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{len(ds)} world images, {args.threads} torch thread(s), batch {bs}\n")
    print("| pass | seconds | / (predict + clip) | cached speed-up |")
    print("|---|---:|---:|---:|")
    for name, sec, ratio, speedup in rows:
        print(f"| {name} | {sec:.1f} | {ratio} | {speedup} |")
    print(f"\ntargets: attribute <= {TARGET_RATIO:g} x (predict + clip) = "
          f"{TARGET_RATIO * base:.1f} s; cached speed-up >= {TARGET_SPEEDUP:g}x")  # fmt: skip


if __name__ == "__main__":
    main()
