"""Inception FID of a run with fewer than the usual 10,000 samples, and its extrapolation.

    GANKIT_DATA=../shared/data .venv/bin/python benchmarks/inception_fid.py RUN_DIR --n 2000

The TF-Inception network runs at about 2 images/s on one thread of this CPU, so the standard
protocol (10,000 samples against 10,000 test images) is hours. This script takes ``--n`` samples
of the run's generator (G_ema when it has one; seed 0, as ``gankit eval``) and the first ``--n``
test images (their features cached like ``gankit eval --metrics fid``'s), and reports:

- FID at n (the same number ``gankit eval RUN --metrics fid --n N`` prints);
- FID on nested subsets of both sets (n/4, n/2, 3n/4, n), and the least-squares line
  FID(m) = FID_inf + k/m through them. The Fréchet distance estimated from m samples is biased
  upwards by about k/m (Chong & Forsyth 2020, "Effectively unbiased FID"); the line's value at
  m = 10,000 estimates the standard protocol's number and FID_inf the bias-free one.

Because the bias is positive, FID at n < 10,000 is above the 10,000-sample value in expectation:
a number under a published 10k FID at n is under it at 10k too (up to the estimate's noise). The
line fitted on small n overshoots: for a Fashion-MNIST run it read 20.4 from n = 2,000 where
``--n 10000`` (the standard protocol, whose FID at n is the number to quote) measured 16.7.
Writes ``benchmarks/out/inception-fid-NAME.json`` and keeps the features for reruns beside it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from gankit.errors import GankitError
from gankit.evaluate import inception_reference
from gankit.metrics.fid import fid
from gankit.sample import generate, load_generator


def subset_fids(fake: np.ndarray, real: np.ndarray, sizes: list[int]) -> list[float]:
    """FID between the first m rows of each feature set, for each m in ``sizes``."""
    return [fid(fake[:m], real[:m]) for m in sizes]


def fit_inverse(sizes: list[int], values: list[float]) -> tuple[float, float]:
    """(a, k) of the least-squares line value = a + k / size."""
    x = 1.0 / np.asarray(sizes, dtype=float)
    k, a = np.polyfit(x, np.asarray(values, dtype=float), 1)
    return float(a), float(k)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--n", type=int, default=2000, help="samples and test images (default 2000)")
    ap.add_argument("--checkpoint", help="a checkpoint folder name (default: the latest good one)")
    ap.add_argument("--name", help="name for the output files (default: the run folder's)")
    ap.add_argument("--out", default="benchmarks/out")
    args = ap.parse_args()
    if args.n < 400:
        ap.error("--n must be at least 400 (the subsets start at n/4 and need more images than 100)")
    name = args.name or Path(args.run).name
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lg = load_generator(args.run, checkpoint=args.checkpoint)
    if lg.cfg.model.conditional:
        raise GankitError("this script is for unconditional generators (gankit eval --metrics fid takes any)")
    t0 = time.perf_counter()
    inc, real = inception_reference(lg.cfg.data.dataset, split="test", n=args.n, root=lg.cfg.data.root)
    real_seconds = time.perf_counter() - t0
    feats_path = out / f"inception-features-{name}-step{lg.step}-n{args.n}.npy"
    if feats_path.exists():
        fake = np.load(feats_path)
    else:
        images, _, _ = generate(lg, args.n, seed=0)
        fake = inc(images).numpy()
        np.save(feats_path, fake)
    sizes = [args.n // 4, args.n // 2, 3 * args.n // 4, args.n]
    real_np = real.numpy() if isinstance(real, torch.Tensor) else np.asarray(real)
    values = subset_fids(fake, real_np, sizes)
    fid_inf, k = fit_inverse(sizes, values)
    result = {"run": args.run, "step": lg.step, "generator": lg.weights, "dataset": lg.cfg.data.dataset,
              "n": args.n, f"fid{args.n}-test": values[-1], "subset_sizes": sizes, "subset_fids": values,
              "fid_inf": fid_inf, "bias_k": k, "fid10k_estimate": fid_inf + k / 10_000,
              "real_features_seconds": round(real_seconds, 1), "inception_sha1": inc.sha1}
    (out / f"inception-fid-{name}.json").write_text(json.dumps(result, indent=1))
    print(f"{name} (step {lg.step}, {lg.weights}): FID at n={args.n}: {values[-1]:.3f}")
    print("  subsets " + ", ".join(f"{m}: {v:.3f}" for m, v in zip(sizes, values)))
    print(f"  FID = {fid_inf:.3f} + {k:.0f}/m  ->  10,000 samples: {fid_inf + k / 10_000:.3f}, unbiased: {fid_inf:.3f}")


if __name__ == "__main__":
    try:
        main()
    except GankitError as exc:
        raise SystemExit(f"error: {exc}") from None
