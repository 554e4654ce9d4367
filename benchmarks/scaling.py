"""How a DCGAN-family training step's time grows with batch size, image side and width.

    .venv/bin/python benchmarks/scaling.py [--reps 5] [--threads N] [--device cpu|cuda]

One ``mnist-best``-style training step (gankit's ``dcgan`` nets, spectral norm in D, hinge loss, Adam,
D on a real and a fake batch then G, under the fast path's autocast and memory format as the loop
resolves them on this machine), on random images so that any side can be measured. Not the loop itself:
D runs two passes where the loop runs one joint pass, and there is no EMA, class head or clusters. Three sweeps around a
base point (batch 64, side 32, width 64), one knob at a time:

- batch 16, 32, 64, 128, 256;
- image side 28, 32, 64 (the family's 7·2ⁿ and 4·2ⁿ geometries: 28 has one up-sampling stage fewer);
- width 16, 32, 64, 128 (channels of G's last hidden layer and D's first; FLOPs grow about as width²).

Each point: the median seconds per step over ``--reps`` timed steps after two warm-up steps, images/s,
FLOPs per step (``torch.utils.flop_counter``), achieved GFLOP/s and its fraction of the fp32 matrix
product rate measured in the same process. Writes ``benchmarks/out/scaling.json`` and a plot,
``scaling.png``: step time against the knob on log-log axes, with the line "time proportional to
FLOPs" through the base point, so the gap shows where fixed overhead (small work) or memory traffic
(large activations) costs more than arithmetic.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import matmul_rate  # noqa: E402  (a sibling benchmark script)
from timing import save_json, times  # noqa: E402

from gankit import config as C  # noqa: E402
from gankit.data.dataset import DatasetInfo  # noqa: E402
from gankit.losses import d_hinge_fake, d_hinge_real, g_hinge  # noqa: E402
from gankit.optim import Optim  # noqa: E402
from gankit.train.build import make_nets, sample_noise  # noqa: E402
from gankit.train.speed import fast_path  # noqa: E402

BASE = {"batch": 64, "side": 32, "width": 64}
SWEEPS = {"batch": [16, 32, 64, 128, 256], "side": [28, 32, 64], "width": [16, 32, 64, 128]}


def make_step(batch: int, side: int, width: int, device: str) -> Any:
    """A closure running one mnist-best-style training step at this size."""
    cfg = C.build("mnist-best", overrides=[f"model.g.width={width}", f"model.d.width={width}",
                                           f"data.batch_size={batch}", f"train.device='{device}'"])
    info = DatasetInfo(name="random", resolution=side, channels=1, class_names=tuple("0123456789"))
    dev = torch.device(device)
    t = cfg.train
    G, D = make_nets(cfg, info)
    # resolved as the training loop resolves it, from the nets (a narrow D alone channels_last on AVX2 CPUs)
    fast = fast_path(precision=t.precision, channels_last=t.channels_last, compile=t.compile, device=dev,
                     nets=(G, D), d=D)
    G, D = fast.prepare(G.to(dev)), fast.prepare(D.to(dev), d=True)
    opt_g = Optim(list(G.parameters()), cfg.optim.g, device_type=dev.type)
    opt_d = Optim(list(D.parameters()), cfg.optim.d, device_type=dev.type)
    real = fast.images(torch.rand(batch, 1, side, side, device=dev) * 2 - 1)

    def step() -> None:
        with fast.autocast():
            fake = G(sample_noise(batch, cfg.model, device=dev))
            d_loss = d_hinge_real(D(real)) + d_hinge_fake(D(fake.detach()))
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        D.requires_grad_(False)
        with fast.autocast():
            g_loss = g_hinge(D(fake))
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
        D.requires_grad_(True)
        if dev.type == "cuda":
            torch.cuda.synchronize()

    return step, fast.describe()


def measure(batch: int, side: int, width: int, reps: int, device: str) -> dict[str, Any]:
    step, path = make_step(batch, side, width, device)
    secs = times(step, reps, warm=2)
    with FlopCounterMode(display=False) as fc:
        step()
    sec = statistics.median(secs)
    flops = float(fc.get_total_flops())
    return {"batch": batch, "side": side, "width": width, "step_s": sec, "step_s_all": secs, "img_s": batch / sec,
            "flops_per_step": flops, "achieved_flops": flops / sec, "fast_path": path}


def plot(rows: dict[str, list[dict[str, Any]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, (knob, pts) in zip(axes, rows.items(), strict=True):
        xs = [p[knob] for p in pts]
        ys = [p["step_s"] * 1e3 for p in pts]
        base = next(p for p in pts if p[knob] == BASE[knob])
        ideal = [base["step_s"] * 1e3 * p["flops_per_step"] / base["flops_per_step"] for p in pts]
        ax.loglog(xs, ys, "o-", label="measured")
        ax.loglog(xs, ideal, "--", color="grey", label="proportional to FLOPs")
        for x, y, p in zip(xs, ys, pts, strict=True):
            ax.annotate(f"{p['img_s']:.0f} img/s", (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
        ax.set_xticks(xs)
        ax.set_xticklabels([str(x) for x in xs])
        ax.minorticks_off()
        ax.set_xlabel(knob)
        ax.set_ylabel("ms per training step")
        others = ", ".join(f"{k} {v}" for k, v in BASE.items() if k != knob)
        ax.set_title(f"{knob} ({others})", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"mnist-best-style DCGAN step time ({base['fast_path']})", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--out", default="benchmarks/out/scaling.json")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rate = matmul_rate(torch.float32, size=8192 if args.device == "cuda" else 1024, device=args.device)
    cpu = platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {cpu}; "
          f"fp32 matrix product {rate / 1e9:.0f} GFLOP/s")
    print(f"{'knob':<6} {'batch':>5} {'side':>4} {'width':>5} {'ms/step':>9} {'img/s':>8} {'GFLOP/step':>10} "
          f"{'GFLOP/s':>8} {'of fp32':>7}")
    rows: dict[str, list[dict[str, Any]]] = {}
    for knob, values in SWEEPS.items():
        rows[knob] = []
        for v in values:
            point = {**BASE, knob: v}
            r = measure(point["batch"], point["side"], point["width"], args.reps, args.device)
            r["of_fp32_matmul"] = r["achieved_flops"] / rate
            rows[knob].append(r)
            print(f"{knob:<6} {r['batch']:>5} {r['side']:>4} {r['width']:>5} {r['step_s'] * 1e3:>9.1f} "
                  f"{r['img_s']:>8.0f} {r['flops_per_step'] / 1e9:>10.2f} {r['achieved_flops'] / 1e9:>8.1f} "
                  f"{r['of_fp32_matmul']:>7.0%}", flush=True)
    out = save_json(args.out, device=args.device, fp32_matmul_flops=rate, base=BASE, sweeps=rows)
    plot(rows, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
