"""Inception feature extraction (``gankit eval --metrics fid``) on a device against the CPU.

    GANKIT_DATA=../shared/data .venv/bin/python benchmarks/inception_speed.py --device cuda --n 2000

Extracts the TF-Inception features of the first ``--n`` MNIST test images on ``--device`` (in full fp32:
TF32 off, as ``gankit eval`` runs it) and of the first ``--cpu-n`` of them on the CPU. Prints images/s on
each, their ratio, and how far the device's features are from the CPU's on the images both saw (as a
fraction of the features' scale; FID needs about 1e-4 or better). Writes JSON (``--out``). Needs the
Inception network: the ``[inception]`` extra or ``GANKIT_INCEPTION``.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from timing import save_json  # benchmarks/, the script's own folder

from gankit.data import load_dataset
from gankit.errors import GankitError
from gankit.metrics.inception import InceptionFeatures
from gankit.train.build import resolve_device


def rate(inc: InceptionFeatures, images: torch.Tensor) -> tuple[float, torch.Tensor]:
    """(images/s, features) of one pass over ``images`` after a warm-up batch (kernel choice, cuDNN plans)."""
    inc(images[:8], progress=False)
    if inc.device.type == "cuda":
        torch.cuda.synchronize(inc.device)
    t0 = time.perf_counter()
    feats = inc(images, progress=False)  # its features come back to the CPU: the pass ends synchronised
    return len(images) / (time.perf_counter() - t0), feats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda[:N]")
    ap.add_argument("--n", type=int, default=2000, help="images on the device")
    ap.add_argument("--cpu-n", type=int, default=50, help="images on the CPU (about 2-8 images/s a core)")
    ap.add_argument("--out", default="benchmarks/out/inception_speed.json")
    args = ap.parse_args()
    try:
        device = resolve_device(args.device)
        images = load_dataset("mnist", split="test").images[: max(args.n, args.cpu_n)]
        dev = InceptionFeatures(device=device)
        cpu = InceptionFeatures(device="cpu")
    except GankitError as exc:
        sys.exit(f"error: {exc}")
    dev_rate, dev_feats = rate(dev, images[: args.n])
    cpu_rate, cpu_feats = rate(cpu, images[: args.cpu_n])
    both = min(args.n, args.cpu_n)
    diff = float((dev_feats[:both] - cpu_feats[:both]).abs().max() / cpu_feats[:both].abs().max())
    rows = [("device", str(device)), ("device images/s", f"{dev_rate:,.1f}"), ("cpu images/s", f"{cpu_rate:,.1f}"),
            ("device / cpu", f"{dev_rate / cpu_rate:.1f}x"), ("features max |diff| / scale", f"{diff:.2e}")]
    for k, v in rows:
        print(f"{k:<28} {v}")
    path = save_json(args.out, device=str(device), n=args.n, cpu_n=args.cpu_n, device_images_per_s=dev_rate,
                     cpu_images_per_s=cpu_rate, ratio=dev_rate / cpu_rate, features_max_rel_diff=diff,
                     gpu=torch.cuda.get_device_name(device) if device.type == "cuda" else None)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
