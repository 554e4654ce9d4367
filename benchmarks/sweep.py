"""Config variants of one preset, compared at equal training steps (a tuning aid).

    GANKIT_DATA=../shared/data .venv/bin/python benchmarks/sweep.py --preset mnist-best --steps 1500 \\
        --eval-at 500,1000,1500 --variant base: --variant "w64:model.g.width=64;model.d.width=64"

Each ``--variant NAME:OVERRIDE;OVERRIDE...`` trains the preset with those overrides for ``--steps``
steps, keeping a checkpoint at every ``--eval-at`` step, and evaluates each of those checkpoints
(G_ema when the run has one) with ``gankit eval``'s code. Steps, not seconds, are the x axis, so the
variants can run side by side on a busy machine; the table also gives each variant's measured
training seconds per step, to turn steps into time on the machine it ran on (compare those only
between variants that ran under the same load).

Prints a table (dFID and the other metrics at each step) and writes ``benchmarks/out/sweep-TAG.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

from time_to_quality import dfid_key, metrics_for  # benchmarks/, the script's own folder

from gankit import config as C
from gankit.errors import GankitError
from gankit.evaluate import evaluate_run
from gankit.run import read_stats
from gankit.train.loop import train


def parse_variant(text: str, *, flag: str = "--variant") -> tuple[str, list[str]]:
    """``NAME:ov1;ov2`` -> (NAME, [ov1, ov2]); ``NAME:`` is the preset as it is."""
    name, sep, rest = text.partition(":")
    if not sep or not name:
        raise GankitError(f"{flag} {text!r}: write NAME:OVERRIDE;OVERRIDE (NAME: alone for the preset as is)")
    return name, [o.strip() for o in rest.split(";") if o.strip()]


def run_variant(preset: str, name: str, overrides: list[str], *, steps: int, eval_at: list[int], n: int,
                out: Path, common: list[str]) -> dict[str, Any]:
    """Train one variant and evaluate it at each step of ``eval_at``."""
    every = math.gcd(*eval_at)
    cfg = C.build(preset, overrides=[*common, *overrides, f"train.steps={steps}", f"train.checkpoint_every={every}",
                                     f"train.keep_checkpoints={steps // every + 1}"])
    run_dir = out / "sweep-runs" / f"{preset}-{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    res = train(cfg, run_dir, progress=False)
    timed = [r for r in read_stats(res.run) if "seconds" in r]
    seconds = timed[-1]["seconds"] if timed else math.nan
    points = []
    for s in eval_at:
        result = evaluate_run(run_dir, metrics=metrics_for(cfg), n=n, checkpoint=f"step-{s:08d}")
        points.append({"step": s, **{k: v for k, v in result.items()
                                     if isinstance(v, int | float) and not isinstance(v, bool)
                                     and k not in ("step", "n", "seed", "seconds")}})
        key = dfid_key(points[-1])
        print(f"{name:<16} step {s:>7}  {key} {points[-1][key]:.3f}", flush=True)
    return {"name": name, "overrides": overrides, "run": str(run_dir), "seconds": seconds,
            "seconds_per_step": seconds / steps, "points": points}


def table(variants: list[dict[str, Any]]) -> str:
    """One row per variant and step: the dFID and the other headline metrics."""
    cols = ("precision", "recall", "coverage", "cond_acc", "modes")
    lines = [f"{'variant':<16} {'s/step':>7} {'step':>7} {'dfid':>8} " + " ".join(f"{c:>9}" for c in cols)]
    for v in variants:
        for p in v["points"]:
            lines.append(f"{v['name']:<16} {v['seconds_per_step']:>7.3f} {p['step']:>7} {p[dfid_key(p)]:>8.3f} "
                         + " ".join(f"{p[c]:>9.3f}" if c in p else f"{'-':>9}" for c in cols))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", required=True)
    ap.add_argument("--variant", action="append", required=True, help="NAME:OVERRIDE;OVERRIDE (repeatable)")
    ap.add_argument("--steps", type=int, default=1500, help="training steps per variant")
    ap.add_argument("--eval-at", default=None, help="comma-separated steps to evaluate at (default: --steps)")
    ap.add_argument("--n", type=int, default=2000, help="samples (and test images) per dFID")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads for training (train.threads)")
    ap.add_argument("--tag", default=None, help="output name suffix (default: the preset)")
    ap.add_argument("--out", default="benchmarks/out")
    args = ap.parse_args()
    eval_at = sorted({int(s) for s in (args.eval_at or str(args.steps)).split(",")})
    if args.steps < 1 or args.n < 2 or eval_at[0] < 1 or eval_at[-1] > args.steps:
        ap.error("--steps must be positive, --n at least 2, and every --eval-at step in 1..--steps")
    variants = [parse_variant(v) for v in args.variant]
    common = [f"train.threads={args.threads}"]
    for _, ov in variants:
        C.build(args.preset, overrides=[*common, *ov])  # every config is valid before anything trains
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = [run_variant(args.preset, name, ov, steps=args.steps, eval_at=eval_at, n=args.n, out=out,
                           common=common) for name, ov in variants]
    print(table(results))
    path = out / f"sweep-{args.tag or args.preset}.json"
    path.write_text(json.dumps({"args": vars(args), "variants": results}, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    try:
        main()
    except GankitError as exc:
        raise SystemExit(f"error: {exc}") from None
