"""Where a training step's time goes, per kind of operator, in fp32 and in bf16 autocast.

    GANKIT_DATA=../shared/data .venv/bin/python benchmarks/profile_step.py mnist-best [--steps 30]
        [--set train.threads=2] [--variant fp32:contiguous --variant bf16:channels_last ...]

For each variant (precision:memory-format, the format ``auto`` for what ``train.channels_last``'s auto
picks) this profiles gankit's own loop (``gankit.train.loop.train``) under ``torch.profiler``, recording
``--steps`` steady-state steps after ``--warm`` unrecorded ones (the run's setup, first-call kernel
creation and warm-up are left out). Operators are grouped into kinds (convolution, transposed
convolution, linear, normalisation, activation, dtype casts, optimizer, ...) by their ATen names, and the
table shows milliseconds per step of each kind's *self* time, so nested calls are not counted twice. A
transposed convolution's backward runs as ``convolution_backward`` and so counts under convolution;
"transposed conv" holds only their forward kernels (and col2im).

Prints the table and writes ``benchmarks/out/profile-PRESET.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, schedule

from gankit import config as C
from gankit.data.sampler import BatchSampler
from gankit.train.loop import train
from gankit.train.speed import bf16_cpu_flags, cpu_flags

# ATen operator name fragments -> kind; the first match wins, so the specific names come first
KINDS: list[tuple[str, tuple[str, ...]]] = [
    ("transposed conv", ("convolution_transpose", "conv_transpose", "col2im", "fold")),
    ("convolution", ("convolution", "conv2d", "conv1d", "mkldnn_conv", "im2col", "unfold")),
    ("linear / matmul", ("addmm", "mm", "bmm", "matmul", "linear", "baddbmm")),
    ("normalisation", ("batch_norm", "layer_norm", "group_norm", "instance_norm", "native_norm")),
    ("optimizer", ("_fused_adam", "_foreach", "addcdiv", "addcmul", "lerp", "rmsprop", "sgd")),
    ("dtype casts / copies", ("_to_copy", "copy_", "to", "contiguous", "clone")),
    ("activation", ("leaky_relu", "relu", "tanh", "sigmoid", "elu", "gelu", "silu", "threshold")),
    ("loss", ("binary_cross_entropy", "softplus", "log_sigmoid", "cross_entropy", "nll", "mse")),
    ("dropout / random", ("dropout", "bernoulli", "normal_", "uniform_", "randn", "rand", "randint",
                          "randperm", "multinomial")),
    ("elementwise / reductions", ("add", "sub", "mul", "div", "mean", "sum", "pow", "sqrt", "where", "clamp",
                                  "fill_", "zero_", "cat", "index", "gt", "lt", "ge", "le", "eq", "abs",
                                  "neg", "exp", "log", "max", "min", "norm", "stack")),
]


def kind_of(name: str) -> str:
    """The kind of an ATen operator (``aten::mkldnn_convolution`` -> convolution)."""
    op = name.split("::", 1)[-1]
    for kind, parts in KINDS:
        if any(p == op or op.startswith(p) or f"_{p}" in op or p in op.split("_") for p in parts):
            return kind
    return "other"


def per_step(cfg: C.Config, warm: int, steps: int) -> dict[str, tuple[float, int]]:
    """Milliseconds of self time and calls per steady-state step, per operator.

    The profiler's schedule advances once per real batch drawn (``BatchSampler.next``, once per step
    for the alternating schedules), so the run's setup and first ``warm`` steps are not recorded.
    """
    run_cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=warm + steps + 2))
    sched = schedule(wait=1, warmup=warm, active=steps, repeat=1)
    draw = BatchSampler.next
    with tempfile.TemporaryDirectory() as tmp, profile(activities=[ProfilerActivity.CPU], schedule=sched) as prof:
        def counted(self: BatchSampler) -> torch.Tensor:
            prof.step()
            return draw(self)

        BatchSampler.next = counted  # type: ignore[method-assign]
        try:
            train(run_cfg, Path(tmp) / "run", progress=False)
        finally:
            BatchSampler.next = draw  # type: ignore[method-assign]
    return {e.key: (e.self_cpu_time_total / 1000 / steps, e.count / steps) for e in prof.key_averages()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("preset")
    ap.add_argument("--steps", type=int, default=30, help="steady-state steps measured (after --warm)")
    ap.add_argument("--warm", type=int, default=5)
    ap.add_argument("--variant", action="append", default=None,
                    help="precision:layout, e.g. fp32:contiguous, bf16:channels_last, fp32:auto (the layout "
                         "train.channels_last's auto picks, e.g. a channels_last D alone) (repeatable)")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--top", type=int, default=12, help="operators listed per variant")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    variants = args.variant or ["fp32:contiguous", "bf16:contiguous", "bf16:channels_last"]
    base = [f"train.log_every={10**6}", f"train.sample_every={10**9}", f"train.checkpoint_every={10**9}"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; CPU bf16 units: {bf16_cpu_flags() or 'none'}")
    results: dict[str, dict[str, tuple[float, int]]] = {}
    for v in variants:
        precision, _, layout = v.partition(":")
        if layout not in ("contiguous", "channels_last", "auto"):
            raise SystemExit(f"error: --variant {v!r}: give precision:layout, the layout contiguous, "
                             "channels_last or auto")
        fmt = [] if layout == "auto" else [f"train.channels_last={'true' if layout == 'channels_last' else 'false'}"]
        cfg = C.build(args.preset, overrides=[*base, f"train.precision='{precision}'", *fmt, *args.overrides])
        results[v] = per_step(cfg, args.warm, args.steps)
    kinds = [k for k, _ in KINDS] + ["other"]
    by_kind = {v: defaultdict(float) for v in variants}
    for v, ops in results.items():
        for key, (ms, _) in ops.items():
            by_kind[v][kind_of(key)] += ms
    print(f"\n{args.preset}: milliseconds per step (self time) by kind of operator")
    print(f"{'kind':<26}" + "".join(f"{v:>22}" for v in variants))
    for k in kinds:
        print(f"{k:<26}" + "".join(f"{by_kind[v][k]:22.2f}" for v in variants))
    print(f"{'total':<26}" + "".join(f"{sum(by_kind[v].values()):22.2f}" for v in variants))
    for v, ops in results.items():
        print(f"\n{v}: top operators (ms per step, calls per step)")
        for key, (ms, calls) in sorted(ops.items(), key=lambda kv: -kv[1][0])[: args.top]:
            print(f"  {key:<48} {ms:9.2f} {calls:7.1f}  [{kind_of(key)}]")
    out = Path(args.out or f"benchmarks/out/profile-{args.preset}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"preset": args.preset, "torch": torch.__version__, "threads": torch.get_num_threads(),
                               "amx_bf16": "amx_bf16" in cpu_flags(), "bf16_cpu_flags": bf16_cpu_flags(),
                               "steps": args.steps,
                               "by_kind_ms": {v: dict(d) for v, d in by_kind.items()},
                               "ops": {v: {k: {"ms": ms, "calls": c} for k, (ms, c) in ops.items()}
                                       for v, ops in results.items()}}, indent=1))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
