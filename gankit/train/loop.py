"""The training loop: one function, read top to bottom, with headed phases."""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gankit import dist, registry
from gankit.augment import diff_augment, parse_policy
from gankit.config import Config, dumps
from gankit.data import BatchSampler, to_float, to_uint8
from gankit.data.files import atomic_write_bytes
from gankit.data.folder import absolute_spec, folder_of
from gankit.errors import GankitError, first_line
from gankit.losses import Objective, clip_bound, clipped_share, d_targets, keras_clipped, top_k, topk_fraction
from gankit.nets.conditional import has_classifier
from gankit.optim import Optim
from gankit.penalties import gradient_penalty, r1_penalty
from gankit.run import (
    RunDir,
    append_stats,
    best_so_far,
    check_free,
    create_run,
    latest_good_checkpoint,
    list_checkpoints,
    load_checkpoint,
    open_run,
    release_run,
    save_checkpoint,
    set_aside_damaged,
    truncate_stats,
)
from gankit.train.build import (
    check_setup,
    cluster_labels,
    fit_clusters,
    load_training_data,
    make_nets,
    resolve_device,
    sample_labels,
    sample_noise,
    value_range,
)
from gankit.train.ema import EMA
from gankit.train.recovery import Recovery
from gankit.train.schedule import build_schedule
from gankit.train.speed import batch_independent, deterministic_kernels, fast_path
from gankit.viz.grid import default_scale, make_grid, save_image

FIXED_NOISE_OFFSET = 1_000_003  # the fixed sample grid's noise comes from seed + this
VAL_OFFSET = 2_000_003  # and the schedule's validation batch from seed + this
AUGMENT_OFFSET = 4_000_037  # DiffAugment's (and the gradient penalty's) random numbers from seed + this


@dataclass
class TrainResult:
    """What a finished run reached."""

    run: RunDir
    step: int
    images_seen: int
    last: dict[str, float]
    stopped_by: str | None = None  # "SIGINT", "SIGTERM" or "time limit" when the run stopped early


class _StopSignals:
    """While training, SIGINT and SIGTERM ask the loop to finish its step, checkpoint and return;
    a second signal stops at once (the last checkpoint stays intact)."""

    def __init__(self) -> None:
        self.received: str | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.received:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def fixed_inputs(cfg: Config, n: int, classes: int | Sequence[int], device: torch.device, *,
                 offset: int = FIXED_NOISE_OFFSET) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Noise (and labels, ``classes`` in turn: a count, or the labels the training images hold) that stay
    the same for the whole run: sample grids, validation."""
    gen = torch.Generator().manual_seed(cfg.train.seed + offset)
    z = sample_noise(n, cfg.model, device=torch.device("cpu"), generator=gen).to(device)
    if not cfg.model.conditional:
        return z, None
    pool = torch.arange(classes) if isinstance(classes, int) else torch.as_tensor(list(classes))
    return z, pool[torch.arange(n) % len(pool)].to(device)


class _Probe:
    """Measures D in eval mode, training nothing (see :class:`gankit.train.schedule.Probe`)."""

    def __init__(self, *, G: nn.Module, D: nn.Module, objective: Objective, make_noise: Any, last_real: Any,
                 val: tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor | None]) -> None:
        self.G, self.D, self.objective = G, D, objective
        self.make_noise, self.last_real, self.val_inputs = make_noise, last_real, val

    def _measure(self, real: torch.Tensor, real_y: Any, z: torch.Tensor, fake_y: Any) -> dict[str, float]:
        modes = (self.G.training, self.D.training)
        self.G.eval()
        self.D.eval()
        with torch.no_grad():
            fake = self.G(z, fake_y)
            r, f = self.D(real, real_y), self.D(fake, fake_y)
            cut = self.objective.threshold
            out = {"d_loss_real": self.objective.d_real(r), "d_loss_fake": self.objective.d_fake(f),
                   "g_loss": self.objective.g(f), "d_acc_real": (r > cut).float().mean(),
                   "d_acc_fake": (f <= cut).float().mean()}
            n = min(len(r), len(f))  # D's accuracy on equal numbers of real and fake images
            out["d_loss"] = 0.5 * (self.objective.d_real(r[:n]) + self.objective.d_fake(f[:n]))
            out["d_acc"] = 0.5 * ((r[:n] > cut).float().mean() + (f[:n] <= cut).float().mean())
        self.G.train(modes[0])
        self.D.train(modes[1])
        m = {k: float(v) for k, v in out.items()}
        m["g_acc"] = 1.0 - m["d_acc_fake"]
        return m

    def batch(self) -> dict[str, float]:
        real, real_y = self.last_real()
        return self._measure(real, real_y, self.make_noise(len(real)), real_y)

    def val(self) -> dict[str, float]:
        return self._measure(*self.val_inputs)


def train(cfg: Config, out: str | Path, *, resume: bool = False, force: bool = False, data_root: str | None = None,
          progress: bool = True) -> TrainResult:
    """Train ``cfg`` into run directory ``out`` (a new one, or an existing one with ``resume``).

    ``train.threads`` and ``train.deterministic`` apply while training; the caller's settings are restored
    afterwards.
    """
    if not resume:
        cfg = _own_data_path(cfg, out)
    threads = torch.get_num_threads()
    try:
        with deterministic_kernels(cfg.train.deterministic):
            return _train(cfg, out, resume=resume, force=force, data_root=data_root, progress=progress)
    finally:
        torch.set_num_threads(threads)
        release_run(out)  # the run directory's lock, taken when it was created or opened


def check_same_data(ckpt: Path, state: dict[str, Any], info: Any, *, n: int) -> None:
    """A clear error when the data a checkpoint was trained on has changed since (a folder dataset with
    images or class folders added or removed), instead of a mismatched net or sampler further on."""
    saved = state.get("data_info") or {}
    advice = "put the data back as it was to resume, or start a new run on the data as it is now"
    classes = saved.get("class_names")
    if classes is not None and list(classes) != list(info.class_names):
        def show(names: list[str] | tuple[str, ...]) -> str:
            return ", ".join(names[:8]) + (" ..." if len(names) > 8 else "")
        def count(names: list[str] | tuple[str, ...]) -> str:
            return f"{len(names)} class{'es' if len(names) != 1 else ''} ({show(names)})"
        raise GankitError(f"{ckpt} was trained on {count(classes)} of {saved.get('name', info.name)}, and the data "
                          f"now has {count(info.class_names)}; " + advice)
    order = (state.get("sampler") or {}).get("order")
    if hasattr(order, "numel") and order.numel() != n:
        raise GankitError(f"{ckpt} was trained on {order.numel():,} images of {saved.get('name', info.name)}, and "
                          f"the data now has {n:,}; " + advice)


def _own_data_path(cfg: Config, out: str | Path) -> Config:
    """``cfg`` with a relative ``folder:`` dataset made absolute, so that the run resumes, samples and
    reports from any directory; refuses an ``out`` inside that folder, whose checkpoints and sample grids
    would become training images."""
    spec = absolute_spec(cfg.data.dataset)
    folder = folder_of(spec)
    if folder is not None:
        data, run = folder.resolve(), Path(out).expanduser().resolve()
        if run == data or data in run.parents:
            raise GankitError(f"--out {out} is inside the dataset's folder {folder}: its checkpoints and sample "
                              "grids would be read as training images; choose an --out outside it")
    return cfg if spec == cfg.data.dataset else replace(cfg, data=replace(cfg.data, dataset=spec))


# settings a checkpoint's saved state overrides: changed on --resume they would be recorded in config.toml
# but do nothing (or, for the schedule, fail to load)
_FIXED_ON_RESUME = {
    "train.seed": "the run's random streams continue from the checkpoint's saved states, so a new seed would "
                  "change only the sample grid's and validation noise, mid-run",
    "data.sampler": "the checkpoint's sampler continues with its saved order and position",
    "schedule.name": "the checkpoint holds the state of the schedule the run was trained with",
}


def check_fixed_settings(was: Config, now: Config) -> None:
    """Refuse a resume that changes a setting the checkpoint's saved state overrides (see _FIXED_ON_RESUME)."""
    for key, why in _FIXED_ON_RESUME.items():
        section, name = key.split(".")
        old, new = getattr(getattr(was, section), name), getattr(getattr(now, section), name)
        if old != new:
            raise GankitError(f"{key} cannot change on --resume ({old!r} -> {new!r}): {why}; resume without "
                              "--set " + key + ", or start a new run")


def _train(cfg: Config, out: str | Path, *, resume: bool, force: bool, data_root: str | None,
           progress: bool) -> TrainResult:
    # ---- set up: threads, device, data ----------------------------------------------------------------
    t = cfg.train
    if t.threads:
        torch.set_num_threads(t.threads)
    device = dist.init(resolve_device(t.device))  # ddp: start the process group, this rank's GPU
    progress = progress and dist.is_main()  # ddp: rank 0 alone prints and writes the run directory
    if not resume and dist.is_main():
        check_free(out, force=force)  # before the (slow) data load
    data = load_training_data(cfg.data, root=data_root)
    info = data.info
    images = data.images.to(device)  # [N, C, H, W] uint8, resident
    labels = data.labels.to(device)  # [N]
    vrange = value_range(cfg.model)
    sampler = BatchSampler(len(data), cfg.data.batch_size, mode=cfg.data.sampler, seed=t.seed)
    conditional = cfg.model.conditional
    clusters = cfg.model.clusters  # self-conditioning: D and G get cluster labels, users see an unconditional G
    labelled = conditional or clusters > 0
    g_batch = t.g_batch_size or cfg.data.batch_size
    local = dist.local_batch(cfg.data.batch_size, "data.batch_size")  # ddp: global batches split evenly over ranks
    g_batch = dist.local_batch(g_batch, "train.g_batch_size")

    # ---- build nets, optimizers, objective, schedule --------------------------------------------------
    G, D = make_nets(cfg, info)
    # the classes the training images hold: a class filter (mnist:3,5) keeps the dataset's class list, and
    # G is asked only for these (for the others D never sees a real image)
    present = labels.unique()
    held = present.tolist()
    check_setup(cfg, info, G, D, batch=local, g_batch=g_batch, classes=held)
    # a new run's directory is made (with --force: the old run deleted) only once the whole config has
    # been set up, below: a bad setting leaves an --out folder untouched. A resumed run is opened now
    # (its lock, its leftovers of killed writes); its config.toml is rewritten only after the restore.
    run = open_run(out) if resume and dist.is_main() else RunDir(out)
    fast = fast_path(precision=t.precision, channels_last=t.channels_last, compile=t.compile, device=device,
                     nets=(G, D), d=D)
    G.to(device).train()
    D.to(device).train()
    if clusters and (not resume or latest_good_checkpoint(run) is None):  # else from the checkpoint
        fit_clusters(G, D, images, clusters, seed=t.seed, value_range=vrange)
        # ddp: every rank takes rank 0's clusters (k-means' float sums could differ between machines); DDP's
        # wrap below copies rank 0's buffers too, but the labels must not depend on that default
        D.centres.copy_(dist.from_main(D.centres.cpu()))
        G.cdf.copy_(dist.from_main(G.cdf.cpu()))
    fast.prepare(G)
    fast.prepare(D, d=True)
    G_ddp = dist.wrap(G, device, sync_batchnorm=t.sync_batchnorm)  # ddp: for the updates; G and D stay the bare nets
    # an AC-GAN class head is left out of D's fake pass under d_update = separate, and out of every pass
    # with class_weight = 0
    unused_head = has_classifier(D) and (cfg.loss.d_update == "separate" or cfg.loss.class_weight == 0)
    D_ddp = dist.wrap(D, device, sync_batchnorm=t.sync_batchnorm, find_unused=unused_head)
    # forward calls, maybe through torch.compile: the bare nets (fakes for D, D inside G's step) and the
    # DDP-wrapped ones for each net's own update (the same modules in one process)
    G_fwd, D_fwd = fast.compiled(G), fast.compiled(D)
    G_upd = G_fwd if G_ddp is G else fast.compiled(G_ddp)
    D_upd = D_fwd if D_ddp is D else fast.compiled(D_ddp)
    opt_g = Optim(list(G.parameters()), cfg.optim.g, device_type=device.type)
    opt_d = Optim(list(D.parameters()), cfg.optim.d, device_type=device.type)
    d_params = list(D.parameters())  # (a list, not D.requires_grad_: that walks every module each step)
    # "joint" runs D once over real and fake together where D treats each image on its own (no batch norm):
    # the same logits and losses as two passes (with dropout, in distribution), with half the layer calls.
    # Spectral norm's power iteration then runs once per D update instead of twice. R1 steps keep two
    # passes, so R1's gradient does not run backward through the fake half too.
    one_pass_joint = cfg.loss.d_update == "joint" and batch_independent(D)
    objective: Objective = registry.get("loss", cfg.loss.name)
    if cfg.loss.clip_eps:
        objective = keras_clipped(objective, cfg.loss.clip_eps)
    classes = has_classifier(D) and cfg.loss.class_weight > 0  # AC-GAN: D's class head and its loss terms
    schedule = build_schedule(cfg.schedule)
    grid_z, grid_y = fixed_inputs(cfg, t.sample_grid, held, device)
    val_size = cfg.schedule.val_size
    val_z, val_fake_y = fixed_inputs(cfg, val_size, held, device, offset=VAL_OFFSET)
    val_idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(t.seed + VAL_OFFSET))[: val_size // 2]
    val_real = to_float(images[val_idx.to(device)], value_range=vrange)
    val_real_y = labels[val_idx.to(device)] if conditional else None  # (self-conditioned: set after resume)
    evaluate = None
    if t.eval_every:
        from gankit.evaluate import generator_dfid

        evaluate = generator_dfid(cfg, held, n=t.eval_n, root=data_root or cfg.data.root, device=device)
    # ---- modern pieces: G_ema, DiffAugment of everything D sees, gradient penalties ----------------------
    ema = EMA(G, decay=cfg.model.ema, start=cfg.model.ema_start, rampup=cfg.model.ema_rampup) if cfg.model.ema else None
    policy = parse_policy(t.augment)
    aug_gen = torch.Generator().manual_seed(t.seed + AUGMENT_OFFSET)  # its state is in every checkpoint
    if not resume and dist.is_main():
        run = create_run(out, cfg, force=force)

    def D_aug(x: torch.Tensor, y: torch.Tensor | None, net: Any = None, **kw: Any) -> Any:
        """D (by default the DDP-wrapped one that D's update syncs) on DiffAugmented images."""
        return (D_upd if net is None else net)(diff_augment(x, policy, aug_gen, vrange) if policy else x, y, **kw)

    def D_cls(x: torch.Tensor, y: torch.Tensor | None, net: Any = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Like D_aug, as (fp32 logits, fp32 class logits or None): the class head's when the run uses it."""
        if not classes:
            return D_aug(x, y, net).float(), None
        logits, cls = D_aug(x, y, net, with_classes=True)
        return logits.float(), cls.float()

    def class_loss(cls: torch.Tensor | None, y: Any, logs: dict[str, torch.Tensor], name: str) -> torch.Tensor | float:
        """class_weight x cross-entropy of D's class head against ``y`` (0 without one); logged as ``name``."""
        if cls is None:
            return 0.0
        ce = F.cross_entropy(cls, y)
        logs[name] = ce.detach()
        logs[name.replace("_cls", "_cls_acc")] = (cls.detach().argmax(1) == y).float().mean()
        return cfg.loss.class_weight * ce

    def penalties(real: torch.Tensor, fake: torch.Tensor, y: Any, real_logits: torch.Tensor, r1_now: bool,
                  logs: dict[str, torch.Tensor]) -> torch.Tensor | float:
        """WGAN-GP and (lazy) R1 terms for D's loss; R1 reuses the forward pass of ``real_logits``."""
        total: torch.Tensor | float = 0.0
        if cfg.loss.gp_weight:
            gp = gradient_penalty(lambda x: D_aug(x, y), real, fake, generator=aug_gen, pack=cfg.model.pack)
            total = total + cfg.loss.gp_weight * gp
            logs["gp"] = gp.detach()
        if r1_now:
            r1 = r1_penalty(real_logits, real)
            total = total + 0.5 * cfg.loss.r1_gamma * cfg.loss.r1_every * r1
            logs["r1"] = r1.detach()
        return total

    best: dict[str, float] = {}
    sums: dict[str, torch.Tensor | float] = {}  # logged losses summed since the last log line
    counts: dict[str, int] = {}
    recovery = Recovery(t)
    torch.manual_seed(t.seed)
    shared = dist.shared_generator(t.seed)  # ddp: every rank draws the global batch's noise, then slices it
    dist.seed_local(t.seed)
    step, images_seen, seconds = 0, 0, 0.0

    def at_step(step: int) -> None:
        """Both optimizers' learning rates for training step ``step``: the linear ramp-down follows the run's
        steps (see Optim.at_step), set as a run starts, after each step, and when a checkpoint is restored."""
        opt_g.at_step(step)
        opt_d.at_step(step)

    # ---- resume (and roll back after divergence) -----------------------------------------------------------
    def restore(ckpt: Path) -> dict[str, Any]:
        nonlocal step, images_seen, seconds, best, sums, counts
        weights, state = load_checkpoint(ckpt)
        check_same_data(ckpt, state, info, n=len(data))
        check_fixed_settings(run.config(), cfg)
        try:
            G.load_state_dict({k[2:]: v for k, v in weights.items() if k.startswith("G.")})
            D.load_state_dict({k[2:]: v for k, v in weights.items() if k.startswith("D.")})
            opt_g.load_state_dict(state["opt_g"])
            opt_d.load_state_dict(state["opt_d"])
        except (RuntimeError, KeyError, ValueError) as exc:
            raise GankitError(f"{ckpt} does not fit this config: {first_line(exc)}. The nets or optimizers differ "
                              "from the ones the run was trained with (a changed model.* or optim.* setting?); "
                              "resume without that change, or start a new run") from None
        try:
            sampler.load_state_dict(state["sampler"])
            schedule.load_state_dict(state["schedule"])
        except (KeyError, ValueError, TypeError) as exc:
            raise GankitError(f"{ckpt}: its sampler or schedule state does not fit this config ({first_line(exc)}); "
                              "resume without the changed data.* or schedule.* setting") from None
        if device.type == "cuda" and state["rng"].get("cuda"):  # before set_rng_state, which reseeds each rank
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        dist.set_rng_state(state["rng"]["torch"], shared, seed=t.seed, step=state["step"])
        if ema is not None:  # a run that turns EMA on at resume starts its average from G
            has_ema = any(k.startswith("G_ema.") for k in weights)
            ema.load_state_dict({k[6:]: v for k, v in weights.items() if k.startswith("G_ema.")} if has_ema
                                else G.state_dict())
        if "augment" in state["rng"]:
            aug_gen.set_state(state["rng"]["augment"])
        step, images_seen, seconds = state["step"], state["images_seen"], state["seconds"]
        at_step(step)
        # the best generator so far is the "best" folder's, even when it is newer than the step restored
        # (a rollback or a resume from an older checkpoint must not let a worse one replace it)
        best = best_so_far(run, state.get("best", {}))
        # the losses summed since the last log line, so the next line averages what it would have
        sums = dict(state.get("log_sums", {}))
        counts = dict(state.get("log_counts", {}))
        if dist.is_main():
            truncate_stats(run, step)
        return state

    unsaved_config = False  # a --resume's changed config, not yet in the run's config.toml
    if resume:
        ckpt = latest_good_checkpoint(run)
        if ckpt is None and list_checkpoints(run):
            raise GankitError(f"{run.path}: every checkpoint is damaged (see the warning above), so the run cannot "
                              "continue; nothing was changed. Start it over with `gankit train --out "
                              f"{run.path} --force ...` (deletes them) or restore the files")
        if ckpt is None:  # killed before its first checkpoint: nothing was saved, so start afresh
            if dist.is_main():
                warnings.warn(f"{run.path}: no complete checkpoint yet; starting from step 0", stacklevel=2)
                truncate_stats(run, 0)
        else:
            state = restore(ckpt)
            recovery.load_state_dict(state.get("recovery", {}))
            was = state.get("data_info", {})
            if dist.is_main() and was.get("name") not in (None, info.name):
                warnings.warn(f"{run.path} was trained on {was['name']!r} and now continues on {info.name!r}",
                              stacklevel=2)
            if dist.is_main():
                set_aside_damaged(run, newer_than=ckpt)  # out of the rotation, which would keep them
        if step >= t.steps:  # nothing to train: the run's config stays as it was
            if dist.is_main():
                print(f"{run.path}: already at step {step} of {t.steps}; raise train.steps (--steps) to go on")
        elif dist.is_main() and run.config() != cfg:  # the run's config records what it runs with ...
            # ... once it has: written with this invocation's first checkpoint, so a changed setting that
            # fails in the first steps (or is interrupted before a checkpoint) leaves it as it was
            unsaved_config = True
    if clusters:  # every image's cluster, by D's fitted (or restored) centres
        labels = cluster_labels(D, images, value_range=vrange)
        val_real_y = labels[val_idx.to(device)]

    # ---- the pieces of a step ------------------------------------------------------------------------------
    current: dict[str, Any] = {}  # this step's real batch, drawn when first needed

    def real_batch() -> tuple[torch.Tensor, torch.Tensor | None]:
        if "real" not in current:
            idx = dist.shard(sampler.next()).to(device)  # ddp: this rank's slice of the global batch
            current["real"] = fast.images(to_float(images[idx], value_range=vrange))  # [B, C, H, W]
            current["y"] = labels[idx] if labelled else None
        return current["real"], current["y"]

    def noise(n: int) -> torch.Tensor:
        return dist.shared_draw(sample_noise, n, cfg.model, device=device, gen=shared)

    def d_update(logs: dict[str, torch.Tensor], *, for_g: bool = False) -> None:
        """One update of D. ``for_g`` (train.reuse_fakes): make the fakes with G's graph kept, for G's
        update that follows to reuse instead of running G again."""
        nonlocal images_seen
        real, real_y = real_batch()
        n = real.shape[0]
        if for_g:
            with fast.autocast():
                fake_g = G_upd(noise(n), real_y)  # G's own update's forward pass (ddp: the wrapped G)
            current["fakes_for_g"] = (fake_g, real_y)
            fake = fake_g.detach().to(real.dtype)
        else:
            with torch.no_grad(), fast.autocast():
                if t.fakes_for_d != "train":  # (switching modes walks every module: only when it changes)
                    G.eval()
                fake = G_fwd(noise(n), real_y).to(real.dtype)  # a conditional G draws the real batch's classes
                if t.fakes_for_d != "train":
                    G.train()
        t_real = t_fake = None
        if objective.uses_targets:  # one target per logit: a packed D judges groups of model.pack images
            n_logits = n // cfg.model.pack
            t_real = dist.shared_draw(d_targets, n_logits, label=cfg.loss.real_label, default=1.0,
                                      noise=cfg.loss.label_noise, device=device, gen=shared)
            t_fake = dist.shared_draw(d_targets, n_logits, label=cfg.loss.fake_label, default=0.0,
                                      noise=cfg.loss.label_noise, device=device, gen=shared)
        r1_now = cfg.loss.r1_gamma > 0 and opt_d.iterations % cfg.loss.r1_every == 0
        if r1_now:  # R1 differentiates D's real logits with respect to the real images
            real = real.detach().requires_grad_(True)
        opt_d.zero_grad()
        if cfg.loss.d_update == "separate":  # a step on the real batch, then one on the fake batch
            with fast.autocast():
                real_logits, real_cls = D_cls(real, real_y)
            loss_real = objective.d_real(real_logits, t_real)
            (loss_real + class_loss(real_cls, real_y, logs, "d_cls")).backward()
            opt_d.step()
            opt_d.zero_grad()
            with fast.autocast():
                fake_logits = D_aug(fake, real_y).float()
            loss_fake = objective.d_fake(fake_logits, t_fake)
            loss_fake.backward()
        elif cfg.loss.d_update == "concat":  # one batch of both, mean loss
            y = torch.cat([real_y, real_y]) if labelled else None
            with fast.autocast():
                both_logits, both_cls = D_cls(torch.cat([real, fake]), y)
            real_logits, fake_logits = both_logits.split(n // cfg.model.pack)  # a packed D: a logit a group
            loss_real, loss_fake = objective.d_real(real_logits, t_real), objective.d_fake(fake_logits, t_fake)
            # the mean over one batch of both is half the joint update's sum: the penalties and the class term
            # are halved with it, so gp_weight, r1_gamma and class_weight weigh as they do there
            (0.5 * (loss_real + loss_fake + penalties(real, fake, real_y, real_logits, r1_now, logs)
                    + class_loss(None if both_cls is None else both_cls[:n], real_y, logs, "d_cls"))).backward()
        elif one_pass_joint and not r1_now:  # joint, as one forward pass over real and fake (same logits)
            with fast.autocast():
                y = torch.cat([real_y, real_y]) if labelled else None
                both_logits, both_cls = D_cls(torch.cat([real, fake]), y)
            real_logits, fake_logits = both_logits.chunk(2)
            real_cls = None if both_cls is None else both_cls.chunk(2)[0]
            loss_real, loss_fake = objective.d_real(real_logits, t_real), objective.d_fake(fake_logits, t_fake)
            (loss_real + loss_fake + penalties(real, fake, real_y, real_logits, False, logs)
             + class_loss(real_cls, real_y, logs, "d_cls")).backward()
        else:  # joint: the summed losses of two forward passes
            with fast.autocast():
                (real_logits, real_cls), fake_logits = D_cls(real, real_y), D_aug(fake, real_y).float()
            loss_real, loss_fake = objective.d_real(real_logits, t_real), objective.d_fake(fake_logits, t_fake)
            (loss_real + loss_fake + penalties(real, fake, real_y, real_logits, r1_now, logs)
             + class_loss(real_cls, real_y, logs, "d_cls")).backward()
        opt_d.step()
        images_seen += n * dist.world()
        cut = objective.threshold  # D calls an image real above it
        acc_real, acc_fake = (real_logits.detach() > cut).float().mean(), (fake_logits.detach() <= cut).float().mean()
        logs.update(d_loss=0.5 * (loss_real.detach() + loss_fake.detach()), d_loss_real=loss_real.detach(),
                    d_loss_fake=loss_fake.detach(), d_acc_real=acc_real, d_acc_fake=acc_fake,
                    d_acc=0.5 * (acc_real + acc_fake))
        if cfg.loss.clip_eps:  # Keras' clipping: the share of D's logits that got no gradient
            logs["d_clipped"] = clipped_share(torch.cat([real_logits.flatten(), fake_logits.flatten()]),
                                              cfg.loss.clip_eps)

    def g_update(logs: dict[str, torch.Tensor]) -> None:
        for p in d_params:  # G's step must not touch D's weights (ddp: bare D, so none of its grads sync)
            p.requires_grad_(False)
        reused = current.pop("fakes_for_g", None)
        if reused is not None:  # train.reuse_fakes: the D update's fakes, labelled with the real batch's classes
            fake, y = reused
        else:
            if conditional and t.g_labels == "batch":  # the step's real batch's classes (seed 003)
                y = real_batch()[1]
            else:
                y = present[dist.shared_draw(sample_labels, g_batch, len(present), device=device, gen=shared)] \
                    if conditional else None
            z = noise(g_batch)
            if clusters:
                y = G.labels_for(z)  # G's clusters, drawn from its noise in proportion to their sizes
            with fast.autocast():
                fake = G_upd(z, y)
        with fast.autocast():
            fake_logits, fake_cls = D_cls(fake, y, net=D_fwd)
        g_logits = fake_logits
        if cfg.loss.topk < 1.0:  # top-k training: only the fakes D rates most real drive G (this rank's)
            frac = topk_fraction(images_seen / len(data), nu=cfg.loss.topk, gamma=cfg.loss.topk_gamma)
            g_logits = top_k(fake_logits, frac)
            logs["topk"] = torch.tensor(frac)
        loss_g = objective.g(g_logits) + class_loss(fake_cls, y, logs, "g_cls")
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        if ema is not None:
            ema.update(G, step)
        for p in d_params:
            p.requires_grad_(True)
        logs.update(g_loss=loss_g.detach(), g_acc=(fake_logits.detach() > objective.threshold).float().mean())
        if cfg.loss.clip_eps:
            logs["g_clipped"] = clipped_share(g_logits, cfg.loss.clip_eps)

    probe = _Probe(G=G, D=D, objective=objective, make_noise=noise, last_real=real_batch,
                   val=(val_real, val_real_y, val_z, val_fake_y))
    probe = dist.synced_probe(probe)  # ddp: measurements averaged over ranks, so schedules agree

    def checkpoint(name: str | None = None) -> None:
        nonlocal unsaved_config
        recovery.saved(step)
        if not dist.is_main():
            return
        weights = {**{f"G.{k}": v for k, v in G.state_dict().items()},
                   **{f"D.{k}": v for k, v in D.state_dict().items()}}
        if ema is not None:
            weights.update({f"G_ema.{k}": v for k, v in ema.state_dict().items()})
        rng: dict[str, Any] = {"torch": dist.rng_state(shared), "augment": aug_gen.get_state()}
        if device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state_all()
        state = {"opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "sampler": sampler.state_dict(),
                 "schedule": schedule.state_dict(), "rng": rng, "images_seen": images_seen, "seconds": seconds,
                 "best": best, "recovery": recovery.state_dict(),
                 "log_sums": {k: float(v) for k, v in sums.items()}, "log_counts": dict(counts),
                 "data_info": {"name": info.name, "resolution": info.resolution, "channels": info.channels,
                               "class_names": list(info.class_names), "classes": held}}
        if unsaved_config:  # before the checkpoint: the config the checkpoint was trained with
            atomic_write_bytes(run.config_path, dumps(cfg).encode())
            unsaved_config = False
        save_checkpoint(run, step=step, weights=weights, state=state, keep=t.keep_checkpoints, name=name)

    def snapshot() -> None:
        if not dist.is_main():
            return
        shown = ema.model if ema is not None else G  # the sample grids show G_ema when the run has one
        shown.eval()
        with torch.inference_mode():
            grid = to_uint8(shown(grid_z, grid_y), value_range=vrange)
        G.train()
        nrow = len(held) if conditional and t.sample_grid % len(held) == 0 else None  # one column per class
        save_image(make_grid(grid, nrow=nrow, scale=default_scale(info.resolution)),
                   run.samples / f"step-{step:08d}.png")

    if step == 0:
        snapshot()  # the untrained generator: the first frame of the evolution
        checkpoint()  # and a checkpoint to resume or roll back to before the first interval ends
    # what this (part of the) run computes with: results differ slightly between fp32 and bf16
    if dist.is_main():
        append_stats(run, {"step": step, "kind": "setup", "fast_path": fast.describe(), "torch": torch.__version__,
                           "processes": dist.world()})

    def diverged(losses: dict[str, float]) -> bool:
        """On divergence, roll back to the newest good checkpoint with lower learning rates (or GankitError)."""
        reason = recovery.check(losses, {"G": G, "D": D})
        if reason is None:
            return False
        at = step
        ckpt = latest_good_checkpoint(run)
        scale = recovery.rollback(step=at, reason=reason, to=ckpt, checkpoints=run.checkpoints)
        restore(ckpt)
        for opt in (opt_g, opt_d):
            opt.set_lr_scale(scale)
        if dist.is_main():
            append_stats(run, {"step": step, "kind": "rollback", "diverged_at": at, "reason": reason,
                               "attempt": recovery.attempts, "lr_scale": scale, "lr_g": opt_g.lr, "lr_d": opt_d.lr})
        if watch is not None:
            watch.rewound()
        msg = f"step {at}: diverged ({reason}); rolled back to step {step}, learning rates x{scale:g}"
        if dist.is_main():
            warnings.warn(msg, stacklevel=2) if not progress else bar.write(msg)
        bar.n = step
        return True

    from gankit.viz.watch import Watcher  # viz: judged grid, TensorBoard, live report (train.judge_every, ...)

    watch = Watcher(cfg, run, images=images, labels=labels, resume=resume) if dist.is_main() else None

    # ---- train ---------------------------------------------------------------------------------------------
    from tqdm import tqdm

    at_step(step)
    bar = tqdm(total=t.steps, initial=step, disable=not progress, desc=cfg.name, unit="step", dynamic_ncols=True)
    last: dict[str, float] = {}
    tick = time.perf_counter()
    started = time.perf_counter()
    stopped_by: str | None = None
    warned_stuck = False  # loss.clip_eps: told once that every logit is beyond the clip (until that ends)
    # TensorBoard's mirror is flushed however the loop ends (an error, a second Ctrl-C), not only at the end
    with _StopSignals() as signals, contextlib.closing(watch) if watch is not None else contextlib.nullcontext():
        while step < t.steps:
            plan = schedule.plan(step)
            logs: dict[str, torch.Tensor] = {}
            current.clear()
            if dist.active():  # ddp: each rank's own random numbers (dropout) from the step, so a resume is exact
                dist.seed_local(t.seed, step)
            for phase in ("g", "d") if plan.g_first else ("d", "g"):
                # ---- train D ----
                if phase == "d":
                    for i in range(plan.d_steps):
                        if i:  # each further critic step its own batch; the first keeps the step's batch,
                            current.clear()  # which G's update may have drawn first (train.g_labels = 'batch')
                        # train.reuse_fakes: the last D update before G's keeps its fakes' graph for G
                        d_update(logs, for_g=t.reuse_fakes and i == plan.d_steps - 1 and plan.g_steps > 0
                                 and not plan.g_first)
                # ---- train G ----
                else:
                    for _ in range(plan.g_steps):
                        g_update(logs)
            dist.fail_for_test(step + 1)
            dist.average_(logs)  # ddp: the global batch's means
            step += 1
            at_step(step)  # the next step's learning rates (logged below)
            bar.update(1)
            report = schedule.after_step(step, logs, probe)

            # ---- log / snapshot / checkpoint ----
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + v
                counts[k] = counts.get(k, 0) + 1
            if report is not None and dist.is_main():
                if report.record:
                    append_stats(run, {"step": step, **report.record})
                if report.line:
                    bar.write(report.line) if progress else print(report.line)
            if t.time_limit is not None and time.perf_counter() - started >= t.time_limit:
                stopped_by = "time limit"
            stopped_by = dist.agree_stop(signals.received or stopped_by)  # ddp: all ranks stop at one step
            out_of_time = stopped_by is not None  # stop now: log, sample and checkpoint this step
            if out_of_time:
                bar.write(f"{stopped_by} at step {step}: saving a checkpoint") if progress else None
            if step % t.log_every == 0 or step == t.steps or out_of_time:
                now = time.perf_counter()
                seconds += now - tick
                tick = now
                last = {k: float(v) / counts[k] for k, v in sums.items()}
                sums, counts = {}, {}
                if diverged(last):  # rolled back: nothing non-finite is logged or checkpointed
                    if out_of_time:
                        break
                    continue
                if dist.is_main():
                    append_stats(run, {"step": step, "kimg": images_seen / 1000, "seconds": round(seconds, 3), **last,
                                       "lr_g": opt_g.lr, "lr_d": opt_d.lr})
                bar.set_postfix({k: f"{last[k]:.3f}" for k in ("d_loss", "g_loss", "d_acc_real", "d_acc_fake")
                                 if k in last})
                stuck = last.get("d_clipped") == 1.0 and last.get("g_clipped", 1.0) == 1.0
                if stuck and not warned_stuck and dist.is_main():
                    msg = (f"step {step}: every logit D gave since the last log was beyond "
                           f"+-{clip_bound(cfg.loss.clip_eps):.1f}, where Keras' clipped cross-entropy "
                           f"(loss.clip_eps = {cfg.loss.clip_eps:g}) passes no gradient: neither net is learning, "
                           "so nothing pulls the logits back and the run stays stuck. Stop it, and train again "
                           "with another train.seed, or with --set loss.clip_eps=0 (the logit form, which has no "
                           "such state)")
                    warnings.warn(msg, stacklevel=2) if not progress else bar.write(msg)
                warned_stuck = stuck
            if evaluate is not None and (step % t.eval_every == 0 or step == t.steps):
                key, value = evaluate(ema.model if ema is not None else G)  # G_ema when the run has one
                if dist.is_main():
                    append_stats(run, {"step": step, "kind": "eval", key: value})
                if value < best.get("value", math.inf):
                    best = {"step": step, "metric": key, "value": value}
                    checkpoint("best")  # outside the keep-last-N rotation
                if progress:  # (no best yet when the first evaluation was NaN)
                    bar.write(f"step {step}: {key} {value:.3f}" + (f" (best {best['value']:.3f} at step "
                                                                   f"{best['step']})" if best else ""))
            if step % t.sample_every == 0 or step == t.steps or out_of_time:
                snapshot()
            if step % t.checkpoint_every == 0 or step == t.steps or out_of_time:
                pending = {k: float(v) / counts[k] for k, v in sums.items()}  # losses since the last log
                if diverged(pending):  # (restored with the checkpoint: the sums it was saved with)
                    if out_of_time:
                        break
                    continue
                seconds += time.perf_counter() - tick
                tick = time.perf_counter()
                checkpoint()
            if watch is not None:
                watch.after_step(step, G=G, D=D, final=step == t.steps or out_of_time)  # viz
            if out_of_time:
                break
    bar.close()
    return TrainResult(run=run, step=step, images_seen=images_seen, last=last, stopped_by=stopped_by)
