"""Training, sampling and evaluation speed of every preset against a plain fp32 eager PyTorch loop.

    GANKIT_DATA=../shared/data .venv/bin/python benchmarks/throughput.py [PRESET ...] [--reps 3]

For each preset, in one process and alternating (rep 1: gankit, plain; rep 2: gankit, plain; ...).
The ratio is that of the medians over all repetitions; each repetition's own ratio is printed as a
range and kept in the JSON (``ratio_per_rep``), since on a shared host the load drifts between them:

- **gankit**: ``gankit.train.loop.train`` itself, with the preset's fast-path switches as resolved on
  this machine (``train.precision = auto`` etc.); its step time is read from the run's own
  ``stats.jsonl`` (seconds between log records, the first interval dropped as warm-up).
- **plain**: the same nets, optimizers and batch sizes written the way the PyTorch examples and the
  seeds write a GAN loop: a ``DataLoader`` over a float ``TensorDataset`` (per-sample collation),
  fp32, contiguous tensors, ``BCEWithLogitsLoss``, D frozen during G's step (as the Keras seeds'
  ``trainable = False``: no weight gradients for D there; until session 24 the plain loop computed and
  threw them away, as the PyTorch DCGAN example does, which cost it 1.5-6% of its step), default
  optimizer implementations, and PyTorch's own layers where gankit swaps in a faster one
  (``ToImage``: the plain ``ConvTranspose2d``), and D's joint update as two passes (real, then fake).
  Where the preset has them, it also does their work: DiffAugment of every image D sees (written as the
  reference code writes it, ``plain_augment``) and G's moving average (a loop over the parameters).
  Its translation, like the reference's, hands D channels_last-strided batches, so there the plain D's
  convolutions run channels_last (gankit's D runs in the layout its fast path resolves to).
- Both arms, and the matrix-rate probes, run at one thread count: ``--set train.threads=N`` sets it for
  the whole process (it used to reach gankit's loop alone, and the JSON reported the default).
- **--also LABEL:OVERRIDES** (optional, repeatable): gankit's loop again with those config overrides,
  in the same alternation, to weigh one switch side by side (``--also "fp32:train.precision='fp32'"``).

Both run the preset's D update (joint, concat or separate) and G batch size; schedules that change
who trains when (seed 000's thresholds, seed 003's pause-the-winner) are replaced by plain
alternation in both, so a step is the same work. Also measured: sampling images/s (gankit's
``generate``, on the training device) and evaluation images/s (the domain evaluator's features and class
probabilities, on the CPU, where ``gankit evaluate`` runs it), the
FLOPs of one training step (``torch.utils.flop_counter``) and the achieved FLOP/s as a fraction of
the fp32 and bf16 matrix-product rates measured in the same process.

Prints a table and writes ``benchmarks/out/throughput.json``. EMNIST has no offline copy here, so
seed 000's nets train on MNIST.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from sweep import parse_variant  # benchmarks/, the script's own folder (same NAME:OVERRIDE;... form)
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.flop_counter import FlopCounterMode

from gankit import config as C
from gankit.data import to_float
from gankit.errors import GankitError, first_line
from gankit.nets import convgrad
from gankit.nets.layers import ToImage
from gankit.run import read_stats
from gankit.sample import LoadedGenerator, generate
from gankit.train.build import fit_clusters, load_training_data, make_nets, sample_noise, value_range
from gankit.train.loop import train
from gankit.train.speed import bf16_cpu_flags, cpu_flags

DATA_FOR = {"emnist-letters": "mnist", "emnist-byclass": "mnist", "emnist-byclass-letters": "mnist"}


def matmul_rate(dtype: torch.dtype, size: int = 1024, seconds: float = 1.0, device: str = "cpu") -> float:
    """FLOP/s of a square matrix product in ``dtype`` (repeated for about ``seconds``)."""
    a = torch.randn(size, size, dtype=dtype, device=device)
    b = torch.randn(size, size, dtype=dtype, device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    a @ b
    sync()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or n < 2:
        for _ in range(10 if device == "cuda" else 1):
            a @ b
            n += 1
        sync()
    return 2 * size**3 * n / (time.perf_counter() - start)


def preset_config(name: str, steps: int, log_every: int, overrides: list[str]) -> C.Config:
    cfg = C.build(name, overrides=overrides)
    sets = [f"train.steps={steps}", f"train.log_every={log_every}", f"train.sample_every={10**9}",
            f"train.checkpoint_every={10**9}", "schedule.name='alternate'"]
    base = cfg.data.dataset.split(":")[0]
    if base in DATA_FOR:
        sets.append(f"data.dataset='{DATA_FOR[base]}'")
    return C.build(name, overrides=[*sets, *overrides])


FAST_PATHS: dict[str, str] = {}  # config name -> what gankit's loop resolved its fast path to (its setup record)


def gankit_step_seconds(cfg: C.Config, log_every: int) -> list[float]:
    """Per-step seconds of gankit's own loop, one value per log interval after the first."""
    with tempfile.TemporaryDirectory() as tmp:
        res = train(cfg, Path(tmp) / "run", progress=False)
        secs = [r["seconds"] for r in read_stats(res.run, "train")]
        setup = read_stats(res.run, "setup")
    if setup:
        FAST_PATHS[cfg.name] = setup[-1].get("fast_path", "")
    return [(b - a) / log_every for a, b in zip(secs[:-1], secs[1:])]


def _plain_opt(params: Any, o: C.OptimConfig) -> torch.optim.Optimizer:
    if o.name == "adam":
        return torch.optim.Adam(params, lr=o.lr, betas=tuple(o.betas), eps=o.eps)
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum)
    return torch.optim.RMSprop(params, lr=o.lr, alpha=o.alpha, eps=o.eps)


def plain_nets(cfg: C.Config, info: Any) -> tuple[nn.Module, nn.Module]:
    """gankit's G and D with its CPU-specific layers swapped back for PyTorch's own (ToImage: a plain
    ConvTranspose2d with the same weights; convolutions without the patch-product weight gradient, which
    runs only under bf16 autocast anyway), as a loop written without gankit would have them."""
    G, D = make_nets(cfg, info)
    for net in (G, D):
        for m in net.modules():
            if isinstance(m, (convgrad.Conv2d, convgrad.ConvTranspose2d)):
                m.patch_grad = False
        for parent in list(net.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, ToImage):
                    plain = nn.ConvTranspose2d(child.in_channels, child.out_channels, child.kernel_size,
                                               child.stride, child.padding, bias=child.bias is not None)
                    plain.load_state_dict(child.state_dict())
                    setattr(parent, name, plain)
    return G, D


def plain_augment(x: torch.Tensor, policy: str) -> torch.Tensor:
    """DiffAugment as a loop written without gankit would carry it (the reference code's transforms and
    constants, in the preset's order): per-image draws from the global generator, translation by one
    advanced index over rows and columns of a zero-padded copy, cutout by a mask. Images in [-1, 1]."""
    n, _, h, w = x.shape
    for name in (p.strip() for p in policy.split(",") if p.strip()):
        if name == "color":
            x = x + (torch.rand(n, 1, 1, 1, dtype=x.dtype) - 0.5)
            grey = x.mean(dim=1, keepdim=True)
            x = (x - grey) * (torch.rand(n, 1, 1, 1, dtype=x.dtype) * 2) + grey
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            x = (x - mean) * (torch.rand(n, 1, 1, 1, dtype=x.dtype) + 0.5) + mean
        elif name == "translation":
            sh, sw = int(h * 0.125 + 0.5), int(w * 0.125 + 0.5)
            dy, dx = torch.randint(-sh, sh + 1, (n, 1, 1)), torch.randint(-sw, sw + 1, (n, 1, 1))
            b, i, j = torch.meshgrid(torch.arange(n), torch.arange(h), torch.arange(w), indexing="ij")
            padded = F.pad(x, (sw, sw, sh, sh)).permute(0, 2, 3, 1)
            x = padded[b, i + sh - dy, j + sw - dx].permute(0, 3, 1, 2)
        elif name == "cutout":
            ch, cw = int(h * 0.5 + 0.5), int(w * 0.5 + 0.5)
            cy = torch.randint(0, h + (1 - ch % 2), (n, 1, 1)) - ch // 2
            cx = torch.randint(0, w + (1 - cw % 2), (n, 1, 1)) - cw // 2
            rows, cols = torch.arange(h).view(1, h, 1), torch.arange(w).view(1, 1, w)
            inside = (rows >= cy) & (rows < cy + ch) & (cols >= cx) & (cols < cx + cw)
            x = x * (~inside).unsqueeze(1).to(x.dtype)
        else:
            raise GankitError(f"the plain loop has no augmentation {name!r}")
    return x


def plain_step_seconds(cfg: C.Config, images: torch.Tensor, labels: torch.Tensor, info: Any, steps: int,
                       *, count_flops: bool = False,
                       weights: torch.dtype = torch.float32) -> tuple[list[float], float | None]:
    """Per-step seconds of the plain loop (the first step dropped as warm-up); FLOPs of one step.

    ``weights=torch.bfloat16`` (``benchmarks/bf16_weights.py``): the same loop with both nets, their
    inputs and activations held in bf16, no autocast and so no per-call casts, and the optimizers
    stepping fp32 master copies of the weights (each update: gradients cast up, master weights copied
    back down), the usual form of bf16 training without autocast.
    """
    G, D = plain_nets(cfg, info)
    bce = torch.nn.BCEWithLogitsLoss()
    b = cfg.data.batch_size
    gb = cfg.train.g_batch_size or b
    cond = cfg.model.conditional or cfg.model.clusters > 0
    if cfg.model.clusters:  # self-conditioned: the clusters are the labels (k-means once, before timing)
        labels = fit_clusters(G, D, images, cfg.model.clusters, seed=cfg.train.seed,
                              value_range=value_range(cfg.model))
    low = weights != torch.float32
    if low:
        masters = {net: [p.detach().clone() for p in net.parameters()] for net in (G, D)}
        G.to(weights)
        D.to(weights)
        for net in (G, D):
            for m in masters[net]:
                m.requires_grad_(True)
    opt_g = _plain_opt(masters[G] if low else G.parameters(), cfg.optim.g)
    opt_d = _plain_opt(masters[D] if low else D.parameters(), cfg.optim.d)
    d_params = list(D.parameters())
    # the preset's DiffAugment of everything D sees, and G's moving average: a hand-written loop of the
    # preset does that work too (before session 27 this loop left both out, to gankit's cost)
    policy = cfg.train.augment

    def judge(x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return D(plain_augment(x, policy) if policy else x, y)

    ema = copy.deepcopy(G).eval().requires_grad_(False) if cfg.model.ema else None

    def logits(t: torch.Tensor) -> torch.Tensor:  # the losses in fp32 (the fp32 loop calls nothing extra)
        return t.float() if low else t

    def update(opt: torch.optim.Optimizer, net: nn.Module) -> None:
        if low:  # gradients up to the fp32 masters, the step there, the weights back down
            for m, p in zip(masters[net], net.parameters()):
                m.grad = None if p.grad is None else p.grad.float()
                p.grad = None
        opt.step()
        if low:
            with torch.no_grad():
                torch._foreach_copy_(list(net.parameters()), masters[net])

    data = TensorDataset(to_float(images, value_range=value_range(cfg.model)).to(weights), labels)

    def noise(n: int) -> torch.Tensor:
        z = sample_noise(n, cfg.model, device=torch.device("cpu"))
        return z.to(weights) if low else z

    loader = iter(DataLoader(data, batch_size=b, shuffle=True, drop_last=True))

    def step() -> None:
        nonlocal loader
        try:
            real, y = next(loader)
        except StopIteration:
            loader = iter(DataLoader(data, batch_size=b, shuffle=True, drop_last=True))
            real, y = next(loader)
        y = y if cond else None
        fake = G(noise(b), y).detach()
        ones, zeros = torch.ones(b), torch.zeros(b)
        opt_d.zero_grad()
        if cfg.loss.d_update == "concat":
            out = judge(torch.cat([real, fake]), torch.cat([y, y]) if cond else None)
            bce(logits(out), torch.cat([ones, zeros])).backward()
        elif cfg.loss.d_update == "separate":
            bce(logits(judge(real, y)), ones).backward()
            update(opt_d, D)
            opt_d.zero_grad()
            bce(logits(judge(fake, y)), zeros).backward()
        else:
            (bce(logits(judge(real, y)), ones) + bce(logits(judge(fake, y)), zeros)).backward()
        update(opt_d, D)
        zg = noise(gb)
        yg = (G.labels_for(zg) if cfg.model.clusters else torch.randint(0, info.num_classes, (gb,))) if cond else None
        opt_g.zero_grad()
        for p in d_params:  # D frozen in G's step, as the Keras seeds' disc.trainable = False
            p.requires_grad_(False)
        F.binary_cross_entropy_with_logits(logits(judge(G(zg, yg), yg)), torch.ones(gb)).backward()
        for p in d_params:
            p.requires_grad_(True)
        update(opt_g, G)
        if ema is not None:
            with torch.no_grad():
                for pe, p in zip(ema.parameters(), G.parameters()):
                    pe.lerp_(p, 1.0 - cfg.model.ema)
                for buf_ema, buf in zip(ema.buffers(), G.buffers()):
                    buf_ema.copy_(buf)

    times = []
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    flops = None
    if count_flops:
        with FlopCounterMode(display=False) as fc:
            step()
        flops = float(fc.get_total_flops())
    return times[1:], flops


def sampling_rate(cfg: C.Config, info: Any, n: int, device: str = "cpu") -> float:
    """Images/s of ``gankit sample``'s generator path on ``device`` (untrained weights: the speed is the
    same), uint8 images back on the CPU as ``gankit sample`` returns them."""
    G, _ = make_nets(cfg, info)
    lg = LoadedGenerator(G=G.eval().to(device), cfg=cfg, info=info, step=0, device=torch.device(device))
    generate(lg, min(n, 200))  # warm-up: kernel selection, first allocations
    t0 = time.perf_counter()
    generate(lg, n)  # ends with a copy to the CPU, which waits for the device
    return n / (time.perf_counter() - t0)


def evaluation_rate(dataset: str, images: torch.Tensor, n: int) -> float | None:
    """Images/s of the domain evaluator (features + class probabilities) on uint8 images."""
    from gankit.metrics.evaluator import family_of, load_evaluator

    try:
        ev = load_evaluator(family_of(dataset))
    except Exception:  # noqa: BLE001  (no evaluator shipped for this family yet)
        return None
    x = images[:n]
    if x.shape[1] != ev.meta["channels"]:
        return None
    ev(x[:200])
    t0 = time.perf_counter()
    ev(x)
    return len(x) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("presets", nargs="*", default=None)
    ap.add_argument("--reps", type=int, default=3, help="alternating repetitions of gankit and plain")
    ap.add_argument("--seconds", type=float, default=20.0, help="rough training time per measurement")
    ap.add_argument("--sample-n", type=int, default=5000)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--gankit-only", action="store_true", help="skip the plain loop (e.g. on a GPU)")
    ap.add_argument("--also", action="append", default=[], metavar="LABEL:OVERRIDE;OVERRIDE",
                    help="another gankit arm with these overrides, alternated with the others (repeatable), "
                         "e.g. fp32:train.precision='fp32'")
    ap.add_argument("--out", default="benchmarks/out/throughput.json")
    ap.add_argument("--keep-going", action="store_true",
                    help="a preset that fails is reported (its error in the JSON) and the others still run")
    args = ap.parse_args()
    names = args.presets or C.preset_names()
    arms = [parse_variant(a, flag="--also") for a in args.also]
    threads = C.build(names[0], overrides=args.overrides).train.threads
    if threads:  # every arm and probe at the thread count gankit's loop is given (its train() sets its own)
        torch.set_num_threads(threads)

    cuda = any("device='cuda'" in o or 'device="cuda"' in o for o in args.overrides)
    dev = "cuda" if cuda else "cpu"
    fp32_rate = matmul_rate(torch.float32, size=8192 if cuda else 1024, device=dev)
    # without bf16 units (AMX, AVX512_BF16) a CPU emulates bf16 products slowly: a small size keeps the
    # probe short; with AMX a 512 product runs well below the units' rate (414 against 506 GFLOP/s at
    # 1024), so the probe uses 2048
    native = bool(bf16_cpu_flags())
    bf16_rate = matmul_rate(torch.bfloat16, size=8192 if cuda else 2048 if native else 512, seconds=0.5, device=dev)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}"
          f"; CPU bf16 units: {bf16_cpu_flags() or 'none'}")
    print(f"matrix product: fp32 {fp32_rate / 1e9:.0f} GFLOP/s, bf16 {bf16_rate / 1e9:.0f} GFLOP/s")
    rows = []
    header = (f"{'preset':<24} {'gankit img/s':>12} {'plain img/s':>12} {'ratio':>6} {'GFLOP/step':>10} "
              f"{'of fp32':>7} {'of bf16':>7} {'sample/s':>9} {'eval/s':>8}")
    print(header)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:  # after every preset: a run cut short by a time limit keeps what it measured
        out.write_text(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),  # every arm's
                                   "amx_bf16": "amx_bf16" in cpu_flags(), "bf16_cpu_flags": bf16_cpu_flags(),
                                   "device": dev, "rows": rows}, indent=1))

    for name in names:
        try:
            rows.append(measure(name, args, arms, cuda, fp32_rate, bf16_rate))
        except Exception as exc:  # noqa: BLE001 - --keep-going: record any failure and go on
            if not args.keep_going:
                raise
            traceback.print_exc()
            print(f"{name:<24} FAILED: {type(exc).__name__}: {first_line(exc)}", flush=True)
            rows.append({"preset": name, "error": f"{type(exc).__name__}: {exc}"})
        save()
    print(f"wrote {out}")


def measure(name: str, args: argparse.Namespace, arms: list[tuple[str, list[str]]], cuda: bool,
            fp32_rate: float, bf16_rate: float) -> dict[str, Any]:
    """One preset's row: gankit's (and the plain loop's) training images/s, FLOPs, sampling and evaluation."""
    probe = preset_config(name, 3, 1, args.overrides)
    data = load_training_data(probe.data)
    info = data.info
    # size the runs from one plain step so each measurement takes about --seconds
    if cuda:  # the plain loop is CPU-only: size the runs from gankit's own first steps, count FLOPs on
        # the CPU at batch 8 (FLOPs grow linearly with the batch)
        one = [statistics.median(gankit_step_seconds(probe, 1))]
        b, gb = probe.data.batch_size, probe.train.g_batch_size or probe.data.batch_size
        cpu_sets = [o for o in args.overrides if "train.device" not in o and "batch_size" not in o]
        small = preset_config(name, 3, 1, [*cpu_sets, "data.batch_size=8", f"train.g_batch_size={8 * gb // b}"])
        flops = plain_step_seconds(small, data.images, data.labels, info, 1, count_flops=True)[1] * b / 8
    else:
        one, flops = plain_step_seconds(probe, data.images, data.labels, info, 1, count_flops=True)
    steps = max(4, min(400, int(args.seconds / max(one[0], 1e-4))))
    log_every = max(1, steps // 4)
    cfg = preset_config(name, log_every * 5, log_every, args.overrides)
    ours, plain = [], []
    extra: dict[str, list[float]] = {label: [] for label, _ in arms}
    arm_cfgs = {label: preset_config(name, log_every * 5, log_every, [*args.overrides, *sets])
                for label, sets in arms}
    per_rep = []  # each repetition's own ratio: neighbours in time share the host's load of the moment
    for _ in range(args.reps):
        mine = gankit_step_seconds(cfg, log_every)
        gankit_fast = FAST_PATHS.get(cfg.name)  # (before an --also arm of the same preset replaces it)
        ours += mine
        for label, arm_cfg in arm_cfgs.items():
            extra[label] += gankit_step_seconds(arm_cfg, log_every)
        if not args.gankit_only:
            theirs = plain_step_seconds(cfg, data.images, data.labels, info, log_every)[0]
            plain += theirs
            per_rep.append(statistics.median(theirs) / statistics.median(mine))
    b = cfg.data.batch_size
    t_ours = statistics.median(ours)
    t_plain = statistics.median(plain) if plain else float("nan")
    row = {"preset": name, "batch": b, "dataset": cfg.data.dataset, "steps_per_measurement": log_every,
           "gankit_img_s": b / t_ours, "plain_img_s": b / t_plain, "ratio": t_plain / t_ours,
           "ratio_per_rep": per_rep,
           "gankit_step_s": ours, "plain_step_s": plain, "flops_per_step": flops,
           "fp32_matmul_flops": fp32_rate, "bf16_matmul_flops": bf16_rate,
           "sample_img_s": sampling_rate(cfg, info, args.sample_n, "cuda" if cuda else "cpu"),
           "eval_img_s": evaluation_rate(cfg.data.dataset, data.images, 5000)}  # on the CPU, as gankit runs it
    row["also"] = {label: {"overrides": dict(arms)[label], "img_s": b / statistics.median(ts), "step_s": ts,
                           "gankit_speedup": statistics.median(ts) / t_ours} for label, ts in extra.items()}
    achieved = flops / t_ours if flops else float("nan")
    row["achieved_flops"] = achieved
    row["gankit_fast_path"] = gankit_fast  # what gankit's arm ran: precision, layout, threads
    # a fraction of the bf16 rate means something only where bf16 products run on units of their own
    bf16_units = cuda or bool(bf16_cpu_flags())
    of_bf16 = f"{achieved / bf16_rate:7.0%}" if bf16_units else f"{'-':>7}"
    ev = f"{row['eval_img_s']:8.0f}" if row["eval_img_s"] else f"{'-':>8}"
    spread = f"  (repetitions {min(per_rep):.2f}-{max(per_rep):.2f})" if per_rep else ""
    print(f"{name:<24} {row['gankit_img_s']:12.0f} {row['plain_img_s']:12.0f} {row['ratio']:6.2f} "
          f"{(flops or 0) / 1e9:10.2f} {achieved / fp32_rate:7.0%} {of_bf16} "
          f"{row['sample_img_s']:9.0f} {ev}{spread}"
          + "".join(f"  {label}: {a['img_s']:.0f} img/s (gankit x{a['gankit_speedup']:.2f})"
                    for label, a in row["also"].items()), flush=True)
    return row


if __name__ == "__main__":
    try:
        main()
    except GankitError as exc:  # a bad --also or --set: the message, not a traceback
        raise SystemExit(f"error: {exc}") from None
