"""Optimizer step time per implementation (per-tensor loop, foreach, fused) for the presets' nets.

    .venv/bin/python benchmarks/optim_step.py [PRESET ...] [--threads 1] [--reps 30]

For each preset: G's and D's trainable parameters with random gradients, and each of Adam, RMSprop
and SGD in each implementation PyTorch offers for it on this device; the median milliseconds of one
``step()`` over ``--reps`` (after three warm-up steps). This is what chose gankit's defaults
(``gankit/optim.py``): fused Adam; SGD and RMSprop on PyTorch's default. Writes
``benchmarks/out/optim_step.json``.
"""

from __future__ import annotations

import argparse

import torch
from timing import median_ms, save_json  # benchmarks/, the script's own folder

from gankit import config as C
from gankit.data.dataset import DatasetInfo
from gankit.train.build import make_nets

OPTIMIZERS = {"adam": torch.optim.Adam, "rmsprop": torch.optim.RMSprop, "sgd": torch.optim.SGD}
IMPLEMENTATIONS = {"loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}
SIDE = {"cifar10": (3, 32)}


def step_ms(params: list[torch.nn.Parameter], name: str, impl: str, reps: int) -> float | None:
    try:
        opt = OPTIMIZERS[name](params, lr=1e-4, **IMPLEMENTATIONS[impl])
    except (TypeError, RuntimeError, ValueError):  # this optimizer has no such implementation here
        return None
    return median_ms(opt.step, reps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("presets", nargs="*", default=["seed002-mlp-mnist", "seed003-cgan-mnist", "mnist-best",
                                                   "seed001-dcgan-mnist", "seed004-dcgan-ships"])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--out", default="benchmarks/out/optim_step.json")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; milliseconds per step() for G + D")
    names = [f"{o}/{i}" for o in OPTIMIZERS for i in IMPLEMENTATIONS]
    print(f"{'preset':<22} {'params':>8} " + " ".join(f"{n:>15}" for n in names))
    rows = []
    for preset in args.presets:
        cfg = C.build(preset)
        channels, side = SIDE.get(cfg.data.dataset.split(":")[0], (1, 28))
        info = DatasetInfo(name="random", resolution=side, channels=channels, class_names=tuple("0123456789"))
        G, D = make_nets(cfg, info)
        params = [p for p in [*G.parameters(), *D.parameters()] if p.requires_grad]
        for p in params:
            p.grad = torch.randn_like(p)
        row = {"preset": preset, "params": sum(p.numel() for p in params),
               "ms": {f"{o}/{i}": step_ms(params, o, i, args.reps) for o in OPTIMIZERS for i in IMPLEMENTATIONS}}
        rows.append(row)
        cells = " ".join(f"{'-' if v is None else f'{v:.2f}':>15}" for v in row["ms"].values())
        print(f"{preset:<22} {row['params'] / 1e6:>7.2f}M {cells}", flush=True)
    print(f"wrote {save_json(args.out, rows=rows)}")


if __name__ == "__main__":
    main()
