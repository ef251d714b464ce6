"""Measure the audited model's accuracy gap inside each planted slice, over seeds.

Usage::

    python benchmarks/world_audited_gaps.py --seeds 0 1 2 3 4 [--plant SPEC ...]

Prints one line per seed (overall test accuracy, per-slice accuracy and gap,
training time) and the minimum gap per slice. Without ``--plant`` it measures
:data:`failscope.world.DEFAULT_PLANTS`.
"""

from __future__ import annotations

import argparse
import json
import time

from failscope.world import DEFAULT_PLANTS, generate_world
from failscope.world.audited import AuditedConfig, evaluate_slices, train_audited_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--plant", action="append", default=None)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    plants = args.plant or list(DEFAULT_PLANTS)
    gaps: dict[str, list[float]] = {}
    for seed in args.seeds:
        t0 = time.perf_counter()
        world = generate_world(plants, seed=seed)
        t1 = time.perf_counter()
        model = train_audited_model(world, AuditedConfig(seed=seed, threads=args.threads))
        t2 = time.perf_counter()
        result = evaluate_slices(model, world)
        for name, s in result["slices"].items():
            gaps.setdefault(name, []).append(s["gap"])
        slices = {
            k: f"acc={v['accuracy']:.3f} gap={v['gap']:.3f} n={v['n']}"
            for k, v in result["slices"].items()
        }
        print(
            f"seed={seed} overall={result['overall']:.3f} world={t1 - t0:.1f}s "
            f"train={t2 - t1:.1f}s {json.dumps(slices)}",
            flush=True,
        )
    for name, values in gaps.items():
        print(f"{name}: min gap {min(values):.3f}, mean gap {sum(values) / len(values):.3f}")


if __name__ == "__main__":
    main()
