"""torch.compile's warm-up against its gain, per preset, in gankit's own training loop.

    GANKIT_DATA=../shared/data .venv/bin/python benchmarks/compile_warmup.py [PRESET ...] [--steps 60]

For each preset and each ``train.compile`` mode (off, default by default; ``--modes`` to choose),
in one process and alternating modes per repetition: train ``--steps`` steps with a log record
every step and read the per-step times from the run's ``stats.jsonl``. Reports the first step's
time (which holds the compilation), the steady step time (median of the second half), the
warm-up cost over the eager first step, the gain per step, and the break-even step count
(warm-up / gain; "never" when compiled steps are not at least 1% faster). Writes
``benchmarks/out/compile_warmup.json``. EMNIST has no offline copy here, so seed 000's nets train
on MNIST. torch.compile refuses GP/R1 penalties (double backward), so presets with them are skipped.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import preset_config  # noqa: E402  (a sibling benchmark script)

from gankit.run import read_stats  # noqa: E402
from gankit.train.loop import train  # noqa: E402

DEFAULT = ["seed002-mlp-mnist", "seed003-cgan-mnist", "mnist-best"]


def step_times(name: str, mode: str, steps: int, overrides: list[str]) -> dict[str, Any]:
    """Per-step seconds of ``steps`` steps of preset ``name`` with ``train.compile = mode``."""
    cfg = preset_config(name, steps, 1, [f"train.compile='{mode}'", *overrides])
    torch._dynamo.reset()  # each measurement compiles from scratch, as a fresh run would
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = train(cfg, Path(tmp) / "run", progress=False)
        wall = time.perf_counter() - t0
        secs = [r["seconds"] for r in read_stats(res.run, "train")]
    per_step = [secs[0]] + [b - a for a, b in zip(secs[:-1], secs[1:])]
    return {"first_s": per_step[0], "steady_s": statistics.median(per_step[len(per_step) // 2:]),
            "per_step": per_step, "wall_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("presets", nargs="*", default=DEFAULT)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--modes", default="off,default")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--out", default="benchmarks/out/compile_warmup.json")
    args = ap.parse_args()
    modes = args.modes.split(",")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'preset':<22} {'mode':<16} {'first step s':>12} {'steady ms':>10} {'speed-up':>8} {'warm-up s':>9} "
          f"{'break-even':>10}")
    results = []
    for name in args.presets:
        runs: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
        for _ in range(args.reps):
            for mode in modes:
                runs[mode].append(step_times(name, mode, args.steps, args.overrides))
        eager = runs.get("off") or runs[modes[0]]
        eager_first = statistics.median(r["first_s"] for r in eager)
        eager_steady = statistics.median(r["steady_s"] for r in eager)
        for mode in modes:
            first = statistics.median(r["first_s"] for r in runs[mode])
            steady = statistics.median(r["steady_s"] for r in runs[mode])
            warmup = first - eager_first
            gain = eager_steady - steady
            # a gain under 1% of the step is within these machines' noise: no break-even to speak of
            even = warmup / gain if gain > 0.01 * eager_steady and mode != "off" else None
            row = {"preset": name, "mode": mode, "first_step_s": first, "steady_step_s": steady,
                   "speedup": eager_steady / steady, "warmup_s": warmup, "break_even_steps": even, "runs": runs[mode]}
            results.append(row)
            even_txt = "-" if mode == "off" else (f"{even:,.0f} steps" if even is not None else "never")
            print(f"{name:<22} {mode:<16} {first:>12.2f} {steady * 1e3:>10.1f} {eager_steady / steady:>7.2f}x "
                  f"{warmup:>9.1f} {even_txt:>10}", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "steps": args.steps,
                               "results": results}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
