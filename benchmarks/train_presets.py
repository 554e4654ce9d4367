"""Train each seed preset for a wall-clock budget and report how far it got.

    GANKIT_DATA=../shared/data .venv/bin/python benchmarks/train_presets.py --minutes 15 --threads 1

Writes runs under benchmarks/out/presets/ and a JSON summary (steps, images seen, seconds, final
losses and D accuracies, the last sample grid). EMNIST has no offline copy here, so seed 000's nets
and schedule run on MNIST (override with --set).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from gankit import config as C
from gankit.run import read_stats
from gankit.train.loop import train

DEFAULT = ["seed002-mlp-mnist", "seed002-mlp-fashion", "seed003-cgan-mnist", "seed000-dcgan-letters",
           "seed001-dcgan-mnist", "seed004-dcgan-ships"]
NO_OFFLINE_COPY = {"seed000-dcgan-letters": ["data.dataset='mnist'"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("presets", nargs="*", default=DEFAULT)
    ap.add_argument("--minutes", type=float, default=15.0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default="benchmarks/out/presets")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()
    out = Path(args.out)
    results = []
    for name in args.presets:
        sets = [f"train.time_limit={args.minutes * 60}", *NO_OFFLINE_COPY.get(name, []), *args.overrides]
        if args.threads:
            sets.append(f"train.threads={args.threads}")
        cfg = C.build(name, overrides=sets)
        t0 = time.perf_counter()
        res = train(cfg, out / name, force=True, progress=False)
        wall = time.perf_counter() - t0
        stats = [r for r in read_stats(res.run) if "d_loss" in r or "g_loss" in r]
        grids = sorted(res.run.samples.glob("*.png"))
        row = {"preset": name, "steps": res.step, "images_seen": res.images_seen, "wall_seconds": round(wall, 1),
               "seconds_per_step": round(wall / max(res.step, 1), 4), "last": stats[-1] if stats else {},
               "grid": str(grids[-1]) if grids else None, "overrides": sets}
        results.append(row)
        last = row["last"]
        print(f"{name:<24} {res.step:>8} steps {wall:>8.0f} s  {row['seconds_per_step']:.3f} s/step  "
              f"d_loss {last.get('d_loss', float('nan')):.3f}  g_loss {last.get('g_loss', float('nan')):.3f}  "
              f"grid {row['grid']}", flush=True)
    (out / "summary.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
