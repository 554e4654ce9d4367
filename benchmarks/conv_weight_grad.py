"""The patch-product weight gradient (gankit.nets.convgrad) against oneDNN's, layer by layer.

    .venv/bin/python benchmarks/conv_weight_grad.py [--rounds 4] [--out benchmarks/out/conv_weight_grad.json]

For each layer shape (the DCGAN nets' kernel-4 stride-2 layers at the sizes the presets use, and a
few others), one forward + backward of gankit's layer under bf16 autocast with channels_last tensors,
the two weight gradients alternating in one process (``--rounds`` rounds of timed repetitions each,
medians). Prints a table with the ratio and whether ``split_is_faster`` picks the patch product for that
shape, and writes JSON: the data behind the rule, to check it on another CPU.
"""

from __future__ import annotations

import argparse
import platform
import statistics
from typing import Any

import torch
from timing import median_ms, save_json  # benchmarks/, the script's own folder

from gankit.nets import convgrad
from gankit.nets.convgrad import _apply, split_is_faster

# (transposed, in channels, out channels, kernel, stride, padding, batch, input side)
SHAPES = [
    (True, 64, 32, 4, 2, 1, 64, 7), (True, 128, 64, 4, 2, 1, 64, 7), (True, 192, 96, 4, 2, 1, 64, 7),
    (True, 128, 64, 4, 2, 1, 64, 8), (True, 256, 128, 4, 2, 1, 64, 4), (True, 64, 32, 4, 2, 1, 64, 16),
    (True, 32, 1, 4, 2, 1, 64, 14),
    (False, 1, 32, 4, 2, 1, 128, 28), (False, 32, 64, 4, 2, 1, 128, 14), (False, 64, 128, 4, 2, 1, 128, 14),
    (False, 64, 128, 4, 2, 1, 128, 32), (False, 128, 256, 4, 2, 1, 128, 16), (False, 3, 64, 4, 2, 1, 128, 32),
    (False, 128, 128, 3, 1, 1, 64, 8), (False, 64, 64, 3, 1, 1, 64, 8),
]


def measure(shape: tuple[Any, ...], rounds: int, reps: int) -> dict[str, Any]:
    transposed, c_in, c_out, k, s, p, n, side = shape
    cls = convgrad.ConvTranspose2d if transposed else convgrad.Conv2d
    layer = cls(c_in, c_out, k, s, p).to(memory_format=torch.channels_last)
    x = torch.randn(n, c_in, side, side).contiguous(memory_format=torch.channels_last).bfloat16()
    x.requires_grad_(c_in > 3)  # a first layer's input (images) needs no gradient

    def step(patch: bool) -> Any:
        def run() -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                y = _apply(layer, x, transposed) if patch else layer(x)
            y.backward(torch.ones_like(y))
        return run

    layer.patch_grad = False  # the module's own call: PyTorch's (oneDNN's) backward
    onednn, patch = [], []
    for _ in range(rounds):
        onednn.append(median_ms(step(False), reps))
        patch.append(median_ms(step(True), reps))
    a, b = statistics.median(onednn), statistics.median(patch)
    return {"transposed": transposed, "in": c_in, "out": c_out, "kernel": k, "stride": s, "padding": p, "batch": n,
            "side": side, "onednn_ms": a, "patch_ms": b, "ratio": a / b, "picked": split_is_faster(layer, x)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--reps", type=int, default=15, help="timed repetitions per round")
    ap.add_argument("--out", default="benchmarks/out/conv_weight_grad.json")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.machine()}")
    print(f"{'layer':<34}{'oneDNN ms':>10}{'patch ms':>10}{'ratio':>7}  picked")
    rows = []
    for shape in SHAPES:
        r = measure(shape, args.rounds, args.reps)
        rows.append(r)
        name = (f"{'convT' if r['transposed'] else 'conv'} {r['in']}->{r['out']} k{r['kernel']}s{r['stride']} "
                f"{r['side']}x{r['side']} b{r['batch']}")
        picked = "yes" if r["picked"] else "no"
        print(f"{name:<34}{r['onednn_ms']:10.3f}{r['patch_ms']:10.3f}{r['ratio']:7.2f}  {picked}", flush=True)
    print(f"wrote {save_json(args.out, rows=rows)}")


if __name__ == "__main__":
    main()
