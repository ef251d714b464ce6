"""Attribution slices vs failure directions on the built-in world, side by side in one run.

For every seed and plant set this builds the world and its audited CNN (cached),
then runs ``failscope.discover`` with the world CLIP three ways on the same
images (embeddings cached once):

* ``directions``: the default slicer (failure directions);
* ``attribution``: ``--slicer attribution`` on Grad-CAM of the audited CNN loaded as
  an eager module (what ``failscope demo --slicer attribution`` does);
* ``attribution-ts`` (``--saliency-seeds``): the same slicer on the TorchScript file,
  which Grad-CAM cannot hook, so the saliency fallback is used.

Each run is captioned with the world vocabulary (``caption_run``, re-ranking on)
and scored by ``failscope evaluate`` on the test split: per planted slice, the
best-matching slice of its class by AP, its P@10 and whether the top caption at
the plant's end names the planted value. The background share is the mean
attribution mass outside the glyph's bounding box (the world's
``glyph_x0..glyph_y1``) among the matched slice's test members, beside that of the
class's correctly predicted test examples; for the ``directions`` run it is read
from the Grad-CAM maps of the same model on the same images.

A plant is a *real failure* when the audited model's test accuracy on its members
is at least 0.10 below the rest of its class. Targets (issue 12): mean P@10 >= 0.8
over real failures; background-spurious plants' slice background share >= 20
points above the class's correct examples; attribution captions name the planted
value top-1 for >= 80% of the planted slices.

Usage::

    python benchmarks/world_attribution.py                    # seeds 0 1 2, all sets
    python benchmarks/world_attribution.py --seeds 0 --sets spurious-background
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

#: Plant sets: spurious background and colour, rare and noisy plants, two per world.
PLANT_SETS: dict[str, tuple[str, ...]] = {
    "spurious-background": ("spurious:0:background=pink:0.95", "rare:3:size=small:0.02"),
    "spurious-color": ("spurious:7:color=red:0.95", "noisy:4:background=navy:0.9"),
    "rare-noisy": ("rare:8:quality=blurry:0.02", "noisy:2:color=yellow:0.9"),
}
MIN_GAP = 0.10
TARGET_P10 = 0.8
TARGET_BACKGROUND_POINTS = 20.0
TARGET_TOP1 = 0.8


def _world(plants: tuple[str, ...], seed: int, workdir: Path) -> tuple[Any, Path]:
    from failscope.demo import default_cache_dir
    from failscope.world import get_audited_model, make_world, parse_plants
    from failscope.world.generate import world_key

    key = world_key(parse_plants(list(plants)), seed=seed, sizes=_sizes())
    world = make_world(plants, seed=seed, root=workdir / "worlds" / key)
    path, _ = get_audited_model(world, cache_dir=default_cache_dir() / "world-models")
    return world, path


def _sizes() -> dict[str, int]:
    from failscope.world import DEFAULT_SIZES

    return dict(DEFAULT_SIZES)


def _run(world: Any, model: dict[str, str], *, slicer: str, out: Path, cache: Path) -> Any:
    """discover + captions on the world (reused when ``out`` already holds the run)."""
    from failscope import discover, load_run
    from failscope.caption import caption_run
    from failscope.demo import record_world

    if (out / "truth.json").is_file():
        return load_run(out)
    run = discover(
        world.manifest_path, clip="world", out=out, slicer=slicer, fit_split="val",
        reference_split="train", seed=world.seed, cache_dir=str(cache), captions=False,
        report=False, **model,
    )  # fmt: skip
    caption_run(run, vocab="world", checks=False)
    record_world(run, world, seed=world.seed)
    return run


def _background(maps: Any, ex: Any, rows: np.ndarray) -> float | None:
    from failscope.attribute.focus import box_share, normalised
    from failscope.world import GLYPH_BOX_COLUMNS
    from failscope.world.render import IMAGE_SIZE

    if not len(rows):
        return None
    boxes = ex.loc[rows, list(GLYPH_BOX_COLUMNS)].to_numpy(np.float64)
    p = normalised(np.asarray(maps[rows], dtype=np.float32))
    return float(np.mean(1 - box_share(p, boxes, image_size=(IMAGE_SIZE, IMAGE_SIZE))))


def _rows(run: Any, maps: Any, *, seed: int, set_name: str, variant: str) -> list[dict]:
    from failscope.evaluate import evaluate_run

    ex = run.examples
    scores = np.asarray(run.slice_score_matrix())
    test = (ex["split"] == "test").to_numpy()
    correct = ex["correct"].to_numpy(bool)
    rows = []
    for r in evaluate_run(run, write=False).plants:
        in_class = test & (ex["label"] == r.class_index).to_numpy()
        plant = next(p for p in run.truth if p.name == r.plant)
        members = ex[plant.column].to_numpy(bool)
        ok_in, ok_out = correct[in_class & members], correct[in_class & ~members]
        bg_slice = bg_ok = None
        if r.matched_slice is not None:
            inside = in_class & run.members(run.slice(r.matched_slice), scores)
            bg_slice = _background(maps, ex, np.flatnonzero(inside))
            bg_ok = _background(maps, ex, np.flatnonzero(in_class & correct))
        rows.append({
            "seed": seed, "set": set_name, "variant": variant, "plant": r.plant, "kind": r.kind,
            "family": r.family, "gap": float(ok_out.mean() - ok_in.mean()),
            "slice": r.matched_slice, "ap": r.average_precision, "p10": r.precision_at["10"],
            "top1": r.top1_hit, "caption": r.top_captions[0] if r.top_captions else None,
            "bg_slice": bg_slice, "bg_correct": bg_ok,
        })  # fmt: skip
    return rows


def _fmt(v: Any, spec: str = ".2f") -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return format(v, spec)


def _mean(values: list[Any]) -> float | None:
    vals = [float(v) for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--sets", nargs="+", default=list(PLANT_SETS), choices=list(PLANT_SETS))
    ap.add_argument("--saliency-seeds", type=int, nargs="*", default=[0],
                    help="seeds that also run the TorchScript (saliency) variant")  # fmt: skip
    ap.add_argument("--workdir", type=Path, default=Path("runs/world_attribution"))
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = ap.parse_args()

    import torch

    from failscope.attribute import load_attributions
    from failscope.demo import world_model

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    rows: list[dict] = []
    for seed in args.seeds:
        for name in args.sets:
            world, ts_path = _world(PLANT_SETS[name], seed, args.workdir)
            cache = args.workdir / "cache" / world.key
            base = args.workdir / "runs" / world.key
            gradcam = world_model(ts_path, slicer="attribution", audited=None)
            runs = {
                "directions": _run(world, {"model": str(ts_path)}, slicer="directions",
                                   out=base / "directions", cache=cache),
                "attribution": _run(world, gradcam, slicer="attribution",
                                    out=base / "attribution", cache=cache),
            }  # fmt: skip
            if seed in args.saliency_seeds:
                runs["attribution-ts"] = _run(world, {"model": str(ts_path)},
                                              slicer="attribution", out=base / "attribution-ts",
                                              cache=cache)  # fmt: skip
            gradcam_maps = load_attributions(runs["attribution"]).maps
            for variant, run in runs.items():
                maps = load_attributions(run).maps if variant == "attribution-ts" else gradcam_maps
                rows += _rows(run, maps, seed=seed, set_name=name, variant=variant)
            print(f"seed {seed} {name}: done ({time.perf_counter() - t0:.0f} s)", flush=True)

    print(f"\nworld attribution benchmark: seeds {args.seeds}, sets {args.sets}; test split; "
          "background share = attribution outside the glyph box (slice / class's "
          "correct)\n")  # fmt: skip
    print("| seed | planted slice | gap | slicer | slice | AP | P@10 | top-1 caption | "
          "background slice / correct |")  # fmt: skip
    print("|---:|---|---:|---|---|---:|---:|---|---:|")
    for r in rows:
        caption = f"{_fmt(r['top1'])}: {r['caption']}" if r["caption"] else "-"
        print(
            f"| {r['seed']} | {r['plant']} | {r['gap']:.2f} | {r['variant']} | {r['slice']} "
            f"| {_fmt(r['ap'], '.3f')} | {_fmt(r['p10'])} | {caption} "
            f"| {_fmt(r['bg_slice'])} / {_fmt(r['bg_correct'])} |"
        )
    print("\n| slicer | plants | real failures | mean AP | mean P@10 (real failures) | "
          "top-1 caption rate | background-spurious: slice - correct (points) |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|")
    summary = {}
    for variant in dict.fromkeys(r["variant"] for r in rows):
        vr = [r for r in rows if r["variant"] == variant]
        real = [r for r in vr if r["gap"] >= MIN_GAP]
        bg = [100 * (r["bg_slice"] - r["bg_correct"]) for r in vr
              if r["kind"] == "spurious" and r["family"] == "background"
              and r["bg_slice"] is not None]  # fmt: skip
        summary[variant] = {
            "p10": _mean([r["p10"] for r in real]), "top1": _mean([r["top1"] for r in vr]),
            "bg": _mean(bg), "bg_min": min(bg) if bg else None,
        }  # fmt: skip
        s = summary[variant]
        print(f"| {variant} | {len(vr)} | {len(real)} | {_fmt(_mean([r['ap'] for r in vr]), '.3f')}"
              f" | {_fmt(s['p10'])} | {_fmt(s['top1'])} | {_fmt(s['bg'], '.1f')} "
              f"(min {_fmt(s['bg_min'], '.1f')}) |")  # fmt: skip
    s = summary.get("attribution", {})
    checks = [
        ("mean P@10 over real failures", s.get("p10"), TARGET_P10),
        ("top-1 caption rate", s.get("top1"), TARGET_TOP1),
        ("background points, every background-spurious plant", s.get("bg_min"),
         TARGET_BACKGROUND_POINTS),
    ]  # fmt: skip
    print()
    for what, value, target in checks:
        verdict = "-" if value is None else ("PASS" if value >= target else "FAIL")
        print(f"attribution {what}: {_fmt(value)} (target >= {target}) -> {verdict}")
    print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
