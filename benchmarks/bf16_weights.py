"""Would holding the nets in bf16 pay where autocast does not? The plain loop in fp32 against the same
loop with bf16 weights and fp32 master copies, alternating in one process.

    GANKIT_DATA=../shared/data .venv/bin/python benchmarks/bf16_weights.py [PRESET ...] [--reps 5]

Autocast casts every weight to bf16 at every call, which is why ``train.precision = "auto"`` keeps
the fully-connected presets in fp32 on a CPU (their bf16 autocast step was slower). Holding both nets
in bf16 removes those casts: the products, activations and batch norm run in bf16, and each update
casts the gradients up to fp32 master weights, steps the optimizer there and copies the weights back
down (``throughput.plain_step_seconds(weights=torch.bfloat16)``). This measures that step's speed
only; its quality would need its own comparison. Prints milliseconds per step of each arm, the ratio of
the medians and each repetition's own ratio, and writes ``benchmarks/out/bf16_weights.json``.
"""

from __future__ import annotations

import argparse
import statistics

import torch
from throughput import plain_step_seconds, preset_config  # benchmarks/, the script's own folder
from timing import save_json

from gankit.train.build import load_training_data
from gankit.train.speed import bf16_cpu_flags, cpu_flags


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("presets", nargs="*", default=["seed002-mlp-mnist", "mnist-best"])
    ap.add_argument("--reps", type=int, default=5, help="alternating repetitions of the two arms")
    ap.add_argument("--seconds", type=float, default=3.0, help="rough time of one measurement")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default="benchmarks/out/bf16_weights.json")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; CPU bf16 units: {bf16_cpu_flags() or 'none'}")
    print(f"{'preset':<22} {'fp32 ms/step':>12} {'bf16 weights':>12} {'ratio':>6}  repetitions")
    rows = []
    for name in args.presets:
        cfg = preset_config(name, 3, 1, [])
        data = load_training_data(cfg.data)
        one = plain_step_seconds(cfg, data.images, data.labels, data.info, 2)[0]
        steps = max(4, min(500, int(args.seconds / max(min(one), 1e-4))))
        arms: dict[str, list[float]] = {"fp32": [], "bf16": []}
        per_rep = []
        for _ in range(args.reps):
            med = {}
            for arm, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
                ts = plain_step_seconds(cfg, data.images, data.labels, data.info, steps, weights=dtype)[0]
                arms[arm] += ts
                med[arm] = statistics.median(ts)
            per_rep.append(med["fp32"] / med["bf16"])
        fp32, bf16 = statistics.median(arms["fp32"]), statistics.median(arms["bf16"])
        rows.append({"preset": name, "batch": cfg.data.batch_size, "steps_per_measurement": steps,
                     "fp32_step_s": arms["fp32"], "bf16_weights_step_s": arms["bf16"], "ratio": fp32 / bf16,
                     "ratio_per_rep": per_rep})
        print(f"{name:<22} {fp32 * 1e3:12.2f} {bf16 * 1e3:12.2f} {fp32 / bf16:6.2f}  "
              + ", ".join(f"{r:.2f}" for r in per_rep), flush=True)
    path = save_json(args.out, amx_bf16="amx_bf16" in cpu_flags(), bf16_cpu_flags=bf16_cpu_flags(), rows=rows)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
