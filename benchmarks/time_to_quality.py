"""Quality against training time: train a preset for a wall-clock budget, measuring it on a fixed schedule.

    GANKIT_DATA=../shared/data .venv/bin/python benchmarks/time_to_quality.py --preset mnist-best --budget 1800
    GANKIT_DATA=../shared/data .venv/bin/python benchmarks/time_to_quality.py --preset mnist-best --pair --budget 1800

Training runs in chunks of ``--eval-every`` seconds of training time (train.time_limit; each chunk
resumes the run exactly where the last stopped, so the chunks add up to one uninterrupted run).
After each chunk the run's generator (G_ema when it has one) is evaluated with ``gankit eval``'s
code: dFID against the test split with ``--n`` samples, precision/recall, density/coverage, the class
metrics, conditional accuracy for conditional runs and the modes of Stacked MNIST. Evaluation time
is not training time: the curve's x axis is the run's own training seconds (set-up, checkpoints at
chunk ends and evaluation excluded).

``--pair`` also trains the preset's seed counterpart (``--against``, else the table below) for the
same budget and prints, at each common time, both dFIDs; then the time the preset needed to reach
the seed's final dFID (resolution: one eval interval). ``--counterpart-from FILE`` takes the seed's
curve from an earlier ``--pair`` result instead of training it again (it must have the same budget,
eval interval and sample count; say so when you report the table).

Writes ``benchmarks/out/ttq-NAME.json`` (the curves and the settings) and ``.png`` (dFID against
training time and against images seen); the runs go under ``benchmarks/out/ttq-runs/``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

from gankit import config as C
from gankit.errors import GankitError
from gankit.evaluate import evaluate_run
from gankit.metrics.evaluator import family_of, load_evaluator
from gankit.run import read_stats
from gankit.train.loop import train

# The seed system each modern preset is measured against by default (the strongest seed at equal time
# on that data: seed 002's MLP trains MNIST in minutes, seed 001's DCGAN takes 23 s a step here).
COUNTERPART = {
    "mnist-best": "seed002-mlp-mnist",
    "fashion-best": "seed002-mlp-fashion",
    "mnist-cond-best": "seed003-cgan-mnist",
    "letters-best": "seed000-dcgan-letters",
    "ships-best": "seed004-dcgan-ships",
}


def metrics_for(cfg: C.Config) -> tuple[str, ...]:
    """The metrics that apply to a run of ``cfg``."""
    names = ["dfid", "pr", "dc", "classes"]
    if cfg.model.conditional:
        names.append("cond-acc")
    if cfg.data.dataset.split(":")[0] == "stacked-mnist":
        names.append("modes")
    return tuple(names)


def run_curve(preset: str, *, budget: float, every: float, n: int, overrides: list[str], out: Path,
              modes_n: int, log: Any = print) -> dict[str, Any]:
    """Train ``preset`` for ``budget`` training seconds, evaluating every ``every`` seconds; the curve."""
    cfg = C.build(preset, overrides=[*overrides, "train.steps=1000000000"])
    load_evaluator(family_of(cfg.data.dataset))  # fail before training when there is no evaluator
    metrics = metrics_for(cfg)
    run_dir = out / "ttq-runs" / f"{preset}-{time.strftime('%Y%m%d-%H%M%S')}"
    points: list[dict[str, Any]] = []
    trained, resume, wall0 = 0.0, False, time.perf_counter()
    while trained < budget - 1e-6:
        cfg.train.time_limit = min(every, budget - trained)
        res = train(cfg, run_dir, resume=resume, progress=False)
        resume = True
        timed = [r for r in read_stats(res.run) if "seconds" in r]
        trained = timed[-1]["seconds"] if timed else trained + cfg.train.time_limit
        t0 = time.perf_counter()
        result = evaluate_run(run_dir, metrics=metrics, n=n, modes_n=modes_n)
        point = {"seconds": round(trained, 2), "step": res.step, "images_seen": res.images_seen,
                 "eval_seconds": round(time.perf_counter() - t0, 1), "generator": result.get("generator"),
                 **{k: v for k, v in result.items() if isinstance(v, int | float) and not isinstance(v, bool)
                    and k not in ("step", "n", "seed", "seconds")}}
        points.append(point)
        key = dfid_key(point)
        log(f"{preset:<22} {trained:>8.1f} s  step {res.step:>7}  {res.images_seen / 1000:>8.1f} kimg  "
            f"{key} {point.get(key, math.nan):.3f}  (eval {point['eval_seconds']:.0f} s)")
        if res.stopped_by not in ("time limit", None):
            break  # a signal: stop the benchmark too
    return {"preset": preset, "config": C.to_dict(cfg), "run": str(run_dir), "metrics": list(metrics),
            "budget": budget, "eval_every": every, "n": n, "wall_seconds": round(time.perf_counter() - wall0, 1),
            "points": points}


def reused_curve(path: Path, preset: str, *, budget: float, every: float, n: int) -> dict[str, Any]:
    """``preset``'s curve from an earlier result file, checked to be measured the same way."""
    try:
        curves = json.loads(path.read_text())["curves"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise GankitError(f"cannot read a ttq result from {path}: {exc}") from None
    found = [c for c in curves if isinstance(c, dict) and c.get("preset") == preset]
    if not found:
        raise GankitError(f"{path} has no curve for {preset} (it has {[c.get('preset') for c in curves]})")
    curve = found[0]
    settings = {"budget": budget, "eval_every": every, "n": n}
    differ = {k: (curve.get(k), v) for k, v in settings.items() if curve.get(k) != v}
    if differ:
        raise GankitError(f"{path}'s {preset} curve was measured differently (theirs, this run's): {differ}")
    return {**curve, "reused_from": str(path)}


def dfid_key(point: dict[str, Any]) -> str:
    """The dFID entry of a measurement (its name carries the sample count)."""
    return next((k for k in point if k.startswith("dfid")), "dfid")


def at_time(points: list[dict[str, Any]], seconds: float) -> dict[str, Any] | None:
    """The last measurement taken at or before ``seconds`` of training."""
    before = [p for p in points if p["seconds"] <= seconds + 1e-6]
    return before[-1] if before else None


def pair_table(best: dict[str, Any], seed: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The side-by-side table and its summary: dFID at equal time, time for best to reach seed's final dFID."""
    bp, sp = best["points"], seed["points"]
    key = dfid_key(bp[0]) if bp else "dfid"
    lines = [f"{'seconds':>8}  {seed['preset'] + ' ' + key:>34}  {best['preset'] + ' ' + key:>30}"]
    for p in bp:
        s = at_time(sp, p["seconds"] + 0.5 * best["eval_every"])
        lines.append(f"{p['seconds']:>8.0f}  {s[key] if s else math.nan:>34.3f}  {p[key]:>30.3f}")
    target = sp[-1][key] if sp else math.nan
    reached = next((p["seconds"] for p in bp if p[key] <= target), None)
    summary = {"seed_final": target, "best_final": bp[-1][key] if bp else math.nan, "metric": key,
               "best_seconds_to_seed_final": reached, "seed_seconds": sp[-1]["seconds"] if sp else None}
    lines.append(f"final: {seed['preset']} {target:.3f} after {summary['seed_seconds']} s; {best['preset']} "
                 f"{summary['best_final']:.3f}; {best['preset']} reached {target:.3f} after "
                 + (f"{reached:.0f} s" if reached is not None else "- (not within the budget)"))
    return "\n".join(lines), summary


def plot(curves: list[dict[str, Any]], path: Path) -> None:
    """dFID against training seconds and against images seen, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for c in curves:
        pts = c["points"]
        if not pts:
            continue
        key = dfid_key(pts[0])
        y = [p[key] for p in pts]
        axes[0].plot([p["seconds"] for p in pts], y, marker="o", label=c["preset"])
        axes[1].plot([p["images_seen"] / 1000 for p in pts], y, marker="o", label=c["preset"])
        axes[0].set_ylabel(f"{key} (lower is better)")
    for ax, xlabel in zip(axes, ("training seconds", "kimg (thousands of real images seen)"), strict=True):
        ax.set_xlabel(xlabel)
        ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", required=True, help="the preset to measure (e.g. mnist-best)")
    ap.add_argument("--budget", type=float, default=1800.0, help="training seconds per run (default 1800)")
    ap.add_argument("--eval-every", type=float, default=120.0, help="training seconds between evaluations")
    ap.add_argument("--n", type=int, default=5000, help="samples (and test images) per dFID")
    ap.add_argument("--modes-n", type=int, default=26_000, help="samples for Stacked MNIST mode counting")
    ap.add_argument("--pair", action="store_true", help="also train the seed counterpart for the same budget")
    ap.add_argument("--against", help="the counterpart preset for --pair (default: the table in this file)")
    ap.add_argument("--counterpart-from",
                    help="with --pair: reuse the counterpart's curve from this earlier ttq JSON")
    ap.add_argument("--threads", type=int, help="torch CPU threads for training (train.threads)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="a config override for every run")
    ap.add_argument("--tag", help="a suffix for the output names (for runs with --set overrides)")
    ap.add_argument("--out", default="benchmarks/out")
    args = ap.parse_args()
    if args.budget <= 0 or args.eval_every <= 0 or args.n < 2:
        ap.error("--budget and --eval-every must be positive and --n at least 2")
    overrides = [*args.overrides, *([f"train.threads={args.threads}"] if args.threads else [])]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    presets = [args.preset]
    if args.pair:
        against = args.against or COUNTERPART.get(args.preset)
        if against is None:
            ap.error(f"no default counterpart for {args.preset}; name one with --against")
        presets = [against, args.preset]
    reused = None
    if args.counterpart_from is not None:
        if not args.pair:
            ap.error("--counterpart-from needs --pair")
        reused = reused_curve(Path(args.counterpart_from), presets[0], budget=args.budget, every=args.eval_every,
                              n=args.n)
    for p in presets:
        C.build(p, overrides=overrides)  # every config is valid before anything trains
    kw = {"budget": args.budget, "every": args.eval_every, "n": args.n, "overrides": overrides, "out": out,
          "modes_n": args.modes_n}
    curves = [reused if reused is not None and i == 0 else run_curve(p, **kw) for i, p in enumerate(presets)]
    result: dict[str, Any] = {"curves": curves, "args": vars(args)}
    name = f"ttq-{args.preset}" + (f"-vs-{presets[0]}" if args.pair else "") + f"-{args.budget:g}s"
    name += f"-{args.tag}" if args.tag else ""
    if args.pair:
        table, summary = pair_table(curves[1], curves[0])
        result["pair"] = summary
        print(table)
    (out / f"{name}.json").write_text(json.dumps(result, indent=1))
    plot(curves, out / f"{name}.png")
    print(f"wrote {out / name}.json and .png")


if __name__ == "__main__":
    try:
        main()
    except GankitError as exc:
        raise SystemExit(f"error: {exc}") from None
