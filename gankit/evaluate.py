"""`gankit eval`: quality metrics of a run's generator against real data, with cached references.

Metric names say their protocol: ``dfid10k-test`` is the Fréchet distance in the domain
evaluator's feature space between 10,000 samples and (up to) 10,000 test images.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gankit import dist
from gankit.data import Dataset, load_dataset
from gankit.data.files import atomic_write_bytes, cache_dir
from gankit.errors import GankitError
from gankit.metrics.classes import (
    class_histogram,
    classes_covered,
    conditional_accuracy,
    inception_score,
    kl_divergence,
)
from gankit.metrics.evaluator import Evaluator, family_of, load_evaluator
from gankit.metrics.fid import fid
from gankit.metrics.kid import kid
from gankit.metrics.modes import channel_kls, stacked_modes
from gankit.metrics.prdc import prdc

METRICS = ("dfid", "fid", "kid", "pr", "dc", "classes", "cond-acc", "modes")
DEFAULT_METRICS = ("dfid", "kid", "pr", "classes")
MODES_N = 26_000  # the VEEGAN / PacGAN protocol
# the fewest samples (and real images) each metric is defined on: the class-probability score splits its
# samples in 10, precision/recall and density/coverage need more than k = 5 nearest neighbours
MIN_N = {"dfid": 2, "fid": 2, "kid": 2, "pr": 6, "dc": 6, "classes": 10, "cond-acc": 1, "modes": 1}


def _check_enough(metrics: tuple[str, ...], n: int, what: str) -> None:
    """A clear error when ``n`` (samples, or real images) is too few for one of ``metrics``."""
    for m in metrics:
        if n < MIN_N[m]:
            raise GankitError(f"{what} {n} is too few for the {m} metric: it needs at least {MIN_N[m]}")


def _tag(n: int) -> str:
    return f"{n // 1000}k" if n % 1000 == 0 and n >= 1000 else str(n)


def reference_rows(total: int, n: int) -> torch.Tensor:
    """Which of a split's ``total`` images a reference of ``n`` holds: all of them when n covers the split,
    else n drawn with seed 1, in stored order (the real-vs-real floor draws its train images with seed 0).
    Stored orders can be sorted by class (CIFAR-10's image folders, folder datasets): the first n of
    CIFAR-10's test split were airplanes and automobiles only."""
    if n >= total:
        return torch.arange(total)
    return torch.randperm(total, generator=torch.Generator().manual_seed(1))[:n].sort().values


def _reference_set(dataset: str, *, split: str, n: int, root: str | None, resolution: int | None,
                   channels: int | None) -> Dataset:
    """The real images of a reference (see :func:`reference_rows`), read as the run was trained: a folder of
    photos at its run's resolution and colour."""
    ds = load_dataset(dataset, root=root, split=split, resolution=resolution, channels=channels)
    return ds if n >= len(ds) else ds.subset(reference_rows(len(ds), n))  # (the whole split: no copy of it)


def _content_key(ds: Dataset) -> str:
    """A hash of the images and labels as loaded: a cached reference is reused only for the same pixels, so
    a folder whose files were added, replaced or edited, or data read at another resolution or colour, gets
    its own (a key made of file names and dates missed edits inside a folder)."""
    h = hashlib.sha256(json.dumps(list(ds.images.shape)).encode())
    h.update(ds.images.contiguous().numpy())
    h.update(ds.labels.contiguous().numpy())
    return h.hexdigest()


def real_reference(ev: Evaluator, dataset: str, *, split: str, n: int, root: str | None,
                   resolution: int | None = None, channels: int | None = None) -> dict[str, torch.Tensor]:
    """Evaluator features, probabilities and labels of ``n`` real images of ``split`` (all when it has no
    more; see :func:`reference_rows`), cached under a hash of the evaluator's weights and views (mirror
    averaging) and of the images themselves.

    ``resolution`` and ``channels``: as the run was trained (a folder of photos is read at its run's size).
    """
    ds = _reference_set(dataset, split=split, n=n, root=root, resolution=resolution, channels=channels)
    key = json.dumps([ev.sha256, bool(ev.meta.get("flip_average")), _content_key(ds)])  # what makes them
    path = cache_dir() / "refstats" / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.npz"
    cached = None
    try:
        with np.load(path) as z:
            cached = {k: torch.from_numpy(z[k]) for k in ("features", "probs", "labels")}
    except (OSError, ValueError, KeyError):
        pass
    if dist.all_true(cached is not None):  # under torchrun all ranks compute it together, or none does
        return cached
    images, labels = _channels_for(ev, ds)
    feats, probs = dist.map_rows(ev, images)  # under torchrun: split over ranks, gathered
    ref = {"features": feats, "probs": probs, "labels": labels}
    buf = io.BytesIO()
    np.savez(buf, **{k: v.numpy() for k, v in ref.items()})
    try:
        atomic_write_bytes(path, buf.getvalue())
    except OSError:
        pass
    return ref


def inception_reference(dataset: str, *, split: str, n: int, root: str | None, device: str | torch.device = "cpu",
                        resolution: int | None = None, channels: int | None = None) -> tuple[Any, torch.Tensor]:
    """(Inception extractor on ``device``, Inception features of ``n`` real images), chosen and cached like
    the evaluator's. The network runs in full fp32 on any device (a GPU's features are tested to agree with
    the CPU's to 1e-4 of their scale), so the cache does not depend on the device."""
    from gankit.metrics.inception import InceptionFeatures

    inc = InceptionFeatures(device=device)
    ds = _reference_set(dataset, split=split, n=n, root=root, resolution=resolution, channels=channels)
    key = json.dumps(["inception", inc.sha1, _content_key(ds)])
    path = cache_dir() / "refstats" / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.npz"
    cached = None
    try:
        with np.load(path) as z:
            cached = torch.from_numpy(z["features"])
    except (OSError, ValueError, KeyError):
        pass
    if dist.all_true(cached is not None):
        return inc, cached
    feats = dist.map_rows(inc, ds.images)
    buf = io.BytesIO()
    np.savez(buf, features=feats.numpy())
    try:
        atomic_write_bytes(path, buf.getvalue())
    except OSError:
        pass
    return inc, feats


def _channels_for(ev: Evaluator, ds: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Stacked MNIST is judged channel by channel by the MNIST evaluator: [N, 3, H, W] -> [3N, 1, H, W]."""
    if ds.images.shape[1] != ev.meta["channels"]:
        if ev.meta["channels"] == 1:
            return ds.images.reshape(-1, 1, *ds.images.shape[2:]), ds.labels
        raise GankitError(f"evaluator {ev.name} takes {ev.meta['channels']}-channel images")
    return ds.images, ds.labels


def compute_metrics(ev: Evaluator, ref: dict[str, torch.Tensor], fake: torch.Tensor, *, metrics: tuple[str, ...],
                    against: str, requested: torch.Tensor | None = None, kid_subsets: int = 100,
                    samples: int | None = None) -> dict[str, Any]:
    """The requested metrics of uint8 samples ``fake`` against a real reference.

    ``samples`` names the protocol when it differs from ``len(fake)`` (Stacked MNIST: 3 digits a sample).
    """
    feats, probs = dist.map_rows(ev, fake)
    out: dict[str, Any] = {}
    n, tag = len(fake), f"{_tag(samples or len(fake))}-{against}"
    k = ev.num_classes
    if "dfid" in metrics:
        out[f"dfid{tag}"] = fid(feats, ref["features"])
    if "kid" in metrics:
        mean, std = kid(feats.numpy(), ref["features"].numpy(), subsets=kid_subsets, subset_size=min(1000, n))
        out[f"kid{tag}"], out[f"kid{tag}_std"] = mean, std
    if "pr" in metrics or "dc" in metrics:
        m = prdc(ref["features"], feats, k_pr=3, k_dc=5)
        keys = [k for group, ks in (("pr", ("precision", "recall")), ("dc", ("density", "coverage")))
                if group in metrics for k in ks]
        out.update({key: m[key] for key in keys})
    if "classes" in metrics:
        pred = probs.argmax(1)
        real_hist = class_histogram(ref["probs"].argmax(1), k)
        out["is"], out["is_std"] = inception_score(probs)
        out["class_kl"] = kl_divergence(class_histogram(pred, k), real_hist)
        # a class counts as covered when it gets at least a tenth of its real share
        share = class_histogram(pred, k)
        out["classes_covered"] = int(((share >= 0.1 * real_hist) & (real_hist > 0)).sum())
        out["classes_real"] = int((real_hist > 0).sum())
        out["class_histogram"] = [round(float(v), 5) for v in share]
    if "cond-acc" in metrics:
        if requested is None:
            raise GankitError("cond-acc needs a conditional generator")
        acc, per = conditional_accuracy(probs.argmax(1), requested, k)
        out["cond_acc"], out["cond_acc_per_class"] = acc, per
        out["cond_classes_covered"] = classes_covered(probs.argmax(1), k)
    return out


def _eval_device(device: str) -> torch.device:
    """Where an evaluation samples and runs Inception: ``device`` resolved, this rank's own GPU under torchrun."""
    dev = dist.local_device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)  # checks such as bf16 support, and tensors made without a device, go there
    return dev


def evaluate_run(run_dir: str | Path, *, metrics: tuple[str, ...] = DEFAULT_METRICS, n: int = 10_000,
                 against: str = "test", root: str | None = None, seed: int = 0, checkpoint: str | None = None,
                 modes_n: int = MODES_N, ema: bool = True, device: str = "cpu") -> dict[str, Any]:
    """Evaluate a run's generator (EMA when present) and write the result into the run directory.

    ``modes_n``: samples for Stacked MNIST mode counting (the protocol's 26,000 unless a test says less).
    ``ema``: False evaluates the raw G of a run that also keeps G_ema.
    ``device``: where G samples (at the run's precision) and the Inception network runs (``auto``: a GPU when
    there is one). The domain evaluator runs on the CPU wherever G does: its nets are small, and its cached
    real features then match on every machine.
    """
    from gankit.sample import generate, load_generator

    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        from gankit.errors import did_you_mean

        raise GankitError(f"unknown metric {unknown[0]!r}{did_you_mean(unknown[0], METRICS)}; "
                          f"choose from {', '.join(METRICS)}")
    if against not in ("train", "test"):
        raise GankitError(f"--against must be train or test, got {against!r}")
    if n < dist.world():
        raise GankitError(f"--n {n} is fewer than the {dist.world()} processes sharing the work")
    _check_enough(tuple(m for m in metrics if m != "modes"), n, "--n")
    if set(metrics) == {"modes"}:
        n = modes_n  # the samples mode counting draws are the only ones (its result is named for them)
    t0 = time.perf_counter()
    lg = load_generator(run_dir, checkpoint=checkpoint, ema=ema, device=str(_eval_device(device)))
    dataset = lg.cfg.data.dataset
    notes = []
    if dataset.startswith("folder:") and against == "test":
        # a folder has no held-out images: name the comparison for what it is (with the run's training images)
        against = "train"
        notes.append("a folder dataset has no test split: compared with its own (training) images")
    elif against in lg.cfg.data.split.split("+") and against != "train":
        notes.append(f"the run trained on these {against} images too (data.split = {lg.cfg.data.split})")
    elif dataset == "mnist-demo":
        notes.append("mnist-demo's splits are the same 10,000 images, so held-out numbers are training-set ones")
    # the real images as the run saw them (a folder of photos is read at the run's resolution and colour)
    real = {"resolution": lg.info.resolution, "channels": lg.info.channels}
    # the Inception FID needs no domain evaluator, so it works for any dataset (a folder of images too)
    fam = family_of(dataset) if set(metrics) - {"fid"} else None
    ev = load_evaluator(fam) if fam else None
    result: dict[str, Any] = {"run": os.path.abspath(run_dir), "step": lg.step, "generator": lg.weights,
                              "evaluator": fam, "evaluator_sha256": ev.sha256 if ev else None, "against": against,
                              "n": n, "seed": seed, "device": lg.device.type}
    if notes:
        result["note"] = "; ".join(notes)
    if set(metrics) - {"modes"}:
        # one sample set serves the Inception FID and the evaluator's metrics (sampling can dominate)
        pool = torch.as_tensor(lg.classes)  # the classes it was trained on, in turn
        labels = pool[torch.arange(n) % len(pool)] if lg.cfg.model.conditional else None
        fake, requested, _ = generate(lg, n, seed=seed, labels=labels, rows=dist.chunk(n))
        fake = dist.gather_rows(fake)  # under torchrun each rank made its share of the same samples
    if "fid" in metrics:
        inc, inc_ref = inception_reference(dataset, split=against, n=n, root=root or lg.cfg.data.root,
                                           device=lg.device, **real)
        _check_enough(("fid",), len(inc_ref), f"{dataset} ({against}) has")
        result[f"fid{_tag(n)}-{against}"] = fid(dist.map_rows(inc, fake), inc_ref)
        result["inception_seconds"] = round(inc.seconds, 1)
        result["n_real"] = len(inc_ref)  # the real images compared: n, or all of a smaller split
    if ev is not None and set(metrics) - {"modes", "fid"}:
        ref = real_reference(ev, dataset, split=against, n=n, root=root or lg.cfg.data.root, **real)
        wanted = tuple(m for m in metrics if m not in ("modes", "fid"))
        _check_enough(tuple(m for m in wanted if m != "cond-acc"), len(ref["labels"]), f"{dataset} ({against}) has")
        result["n_real"] = len(ref["labels"])
        if dataset.split(":")[0] == "stacked-mnist":
            fake = fake.reshape(-1, 1, *fake.shape[2:])
        result.update(compute_metrics(ev, ref, fake, metrics=wanted, against=against,
                                      requested=requested if lg.cfg.model.conditional else None, samples=n))
    if ev is not None and "modes" in metrics:
        if lg.info.channels != 3 or fam != "mnist":
            raise GankitError("the modes metric is for Stacked MNIST generators")
        fake, _, _ = generate(lg, modes_n, seed=seed, rows=dist.chunk(modes_n))
        _, probs = dist.map_rows(ev, dist.gather_rows(fake).reshape(-1, 1, *fake.shape[2:]))
        digits = probs.argmax(1).reshape(-1, 3)
        result["modes"], result["modes_kl"] = stacked_modes(digits)
        for c, kl in enumerate(channel_kls(digits)):  # where the mode KL comes from, channel by channel
            result[f"modes_kl_channel{c}"] = kl
        result["modes_confidence"] = float(probs.max(1).values.mean())  # the evaluator's mean top probability
        result["modes_n"] = modes_n
    result["seconds"] = round(time.perf_counter() - t0, 2)
    if not dist.is_main():
        return result  # every rank has the numbers; rank 0 writes them
    out = Path(run_dir) / "eval"
    out.mkdir(exist_ok=True)
    # one file per protocol (step, split, n, seed, which G); a later evaluation with other metrics adds to it
    # G's samples depend on the device (a GPU samples at the run's precision, bf16 by default), so a GPU's
    # numbers go to their own file rather than merging with a CPU's
    path = out / (f"step-{lg.step:08d}-{against}-{_tag(n)}" + (f"-seed{seed}" if seed else "")
                  + ("" if ema else "-noema") + ("" if lg.device.type == "cpu" else f"-{lg.device.type}") + ".json")
    try:
        earlier = json.loads(path.read_text())
    except (OSError, ValueError):
        earlier = {}
    if earlier.get("evaluator_sha256") and result["evaluator_sha256"] not in (None, earlier["evaluator_sha256"]):
        # another domain evaluator (retrained, or GANKIT_EVALUATORS): its numbers must not sit beside the
        # earlier one's under one checksum; only the Inception FID, which does not depend on it, stays
        earlier = {k: v for k, v in earlier.items() if k.startswith("fid") or k == "inception_seconds"}
    # an evaluation without the domain evaluator (fid alone) keeps the record of the one that made earlier numbers
    kept = {k: v for k, v in result.items() if v is not None or earlier.get(k) is None}
    atomic_write_bytes(path, json.dumps({**earlier, **kept}, indent=1).encode())
    with open(Path(run_dir) / "metrics.jsonl", "a") as fh:
        fh.write(json.dumps({k: v for k, v in result.items() if not isinstance(v, list)}) + "\n")
    return result


def evaluate_real(dataset: str, *, metrics: tuple[str, ...] = DEFAULT_METRICS, n: int = 10_000,
                  root: str | None = None, device: str = "cpu") -> dict[str, Any]:
    """The floor: n of the train split's images (drawn with seed 0) scored against the test split, as if
    generated (``device``: where the Inception network runs, as in :func:`evaluate_run`)."""
    if dataset.startswith("folder:"):
        raise GankitError(f"--real {dataset}: a folder dataset has no test split to score its images against; "
                          "--real needs a dataset with train and test splits (mnist, fashion-mnist, cifar10, ...)")
    _check_enough(tuple(m for m in metrics if m != "modes"), n, "--n")
    t0 = time.perf_counter()
    dev = _eval_device(device) if "fid" in metrics else torch.device("cpu")  # the rest runs on the CPU
    # the Inception FID alone needs no domain evaluator
    ev = load_evaluator(family_of(dataset)) if set(metrics) - {"fid"} else None
    ds = load_dataset(dataset, root=root, split="train")
    # the "generated" side: n train images drawn with seed 0 (the reference's draw, when n is less than the
    # test split, uses seed 1: mnist-demo's two splits are one set of images, and they must not be the same n)
    idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))[: min(n, len(ds))]
    # n counts images as a run's n counts samples (a Stacked MNIST image is one sample of three digits)
    result: dict[str, Any] = {"dataset": dataset, "n": len(idx), "device": dev.type}
    if dataset == "mnist-demo":
        result["note"] = "mnist-demo's splits are the same 10,000 images: this floor scores them against themselves"
    if ev is not None:
        ref = real_reference(ev, dataset, split="test", n=n, root=root)
        images, labels = _channels_for(ev, ds.subset(idx))
        ok = tuple(m for m in metrics if m not in ("modes", "cond-acc", "fid"))
        _check_enough(ok, min(len(idx), len(ref["labels"])), f"{dataset} has")
        result.update(evaluator=ev.name, n_real=len(ref["labels"]))
        result.update(compute_metrics(ev, ref, images, metrics=ok, against="test", samples=len(idx)))
        if "cond-acc" in metrics:
            _, probs = dist.map_rows(ev, images)
            result["cond_acc"] = float((probs.argmax(1) == labels).double().mean())
    if "fid" in metrics:
        inc, inc_ref = inception_reference(dataset, split="test", n=n, root=root, device=dev)
        result[f"fid{_tag(len(idx))}-test"] = fid(dist.map_rows(inc, ds.images[idx]), inc_ref)
        result["n_real"] = len(inc_ref)
    result["seconds"] = round(time.perf_counter() - t0, 2)
    return result


def generator_dfid(cfg: Any, classes: list[int], *, n: int, root: str | None, device: torch.device) -> Any:
    """A function G -> ("dfid{n}-test", value) for use during training: the evaluator and the real
    reference are loaded once, and the same fixed noise is used at every call (less noise in the curve).
    A conditional G is asked for ``classes`` (those its training images hold), drawn at random."""
    from gankit.data import to_uint8
    from gankit.train.build import sample_labels, sample_noise, value_range

    ev = load_evaluator(family_of(cfg.data.dataset))
    ref = real_reference(ev, cfg.data.dataset, split="test", n=n, root=root)
    gen = torch.Generator().manual_seed(cfg.train.seed + 3_000_017)
    z = sample_noise(n, cfg.model, device=torch.device("cpu"), generator=gen)
    y = None
    if cfg.model.conditional:
        y = torch.as_tensor(classes)[sample_labels(n, len(classes), device=torch.device("cpu"), generator=gen)]
    key = f"dfid{_tag(n)}-test"

    def measure(G: torch.nn.Module) -> tuple[str, float]:
        was = G.training
        G.eval()
        out = []
        finite = True
        lo, hi = dist.chunk(n)  # under torchrun each rank samples and featurizes its share of the fixed noise
        try:
            with torch.inference_mode():
                for i in range(lo, hi, 500):
                    j = min(i + 500, hi)
                    yb = y[i:j].to(device) if y is not None else None
                    x = G(z[i:j].to(device), yb)
                    finite = finite and bool(torch.isfinite(x).all())
                    out.append(to_uint8(x, value_range=value_range(cfg.model)).cpu())
        finally:
            G.train(was)
        # NaN pixels are not scored as the black images uint8 makes of them; every rank agrees first, so
        # none waits in the gather below for a rank that stopped
        if not dist.all_true(finite):
            return key, math.nan
        fake = torch.cat(out)
        if fake.shape[1] != ev.meta["channels"]:
            fake = fake.reshape(-1, 1, *fake.shape[2:])
        return key, fid(dist.gather_rows(ev(fake)[0]), ref["features"])  # all ranks' features, in order

    return measure


def format_table(result: dict[str, Any]) -> str:
    """The scalar results as an aligned two-column table."""
    rows = [(k, v) for k, v in result.items() if isinstance(v, int | float) and not isinstance(v, bool)]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v:.4f}" if isinstance(v, float) else f"{k:<{width}}  {v}" for k, v in rows)
