"""The training loop: one function, read top to bottom, with headed phases."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gankit import registry
from gankit.config import Config
from gankit.data import BatchSampler, to_float, to_uint8
from gankit.errors import GankitError
from gankit.losses import Objective, d_targets
from gankit.optim import Optim
from gankit.run import (
    RunDir,
    append_stats,
    create_run,
    latest_good_checkpoint,
    load_checkpoint,
    save_checkpoint,
    truncate_stats,
)
from gankit.train.build import load_training_data, make_nets, resolve_device, sample_labels, sample_noise, value_range
from gankit.train.schedule import build_schedule
from gankit.viz.grid import default_scale, make_grid, save_image

FIXED_NOISE_OFFSET = 1_000_003  # the fixed sample grid's noise comes from seed + this


@dataclass
class TrainResult:
    """What a finished (or stopped) run reached."""

    run: RunDir
    step: int
    images_seen: int
    last: dict[str, float]


def fixed_inputs(cfg: Config, num_classes: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The noise (and labels: classes in turn) of the fixed sample grid, the same for the whole run."""
    gen = torch.Generator().manual_seed(cfg.train.seed + FIXED_NOISE_OFFSET)
    n = cfg.train.sample_grid
    z = sample_noise(n, cfg.model, device=torch.device("cpu"), generator=gen).to(device)
    labels = torch.arange(n, device=device) % num_classes if cfg.model.conditional else None
    return z, labels


def train(cfg: Config, out: str | Path, *, resume: bool = False, force: bool = False, data_root: str | None = None,
          progress: bool = True) -> TrainResult:
    """Train ``cfg`` into run directory ``out`` (a new one, or an existing one with ``resume``)."""
    # ---- set up: threads, device, data --------------------------------------------------------------
    t = cfg.train
    if t.threads:
        torch.set_num_threads(t.threads)
    device = resolve_device(t.device)
    run = RunDir(out) if resume else create_run(out, cfg, force=force)
    data = load_training_data(cfg.data, root=data_root)
    info = data.info
    images = data.images.to(device)  # [N, C, H, W] uint8, resident
    labels = data.labels.to(device)
    vrange = value_range(cfg.model)
    sampler = BatchSampler(len(data), cfg.data.batch_size, mode=cfg.data.sampler, seed=t.seed)
    conditional = cfg.model.conditional
    ncls = info.num_classes

    # ---- build nets, optimizers, objective, schedule ------------------------------------------------
    G, D = make_nets(cfg, info)
    G.to(device).train()
    D.to(device).train()
    opt_g = Optim(list(G.parameters()), cfg.optim.g, device_type=device.type)
    opt_d = Optim(list(D.parameters()), cfg.optim.d, device_type=device.type)
    objective: Objective = registry.get("loss", cfg.loss.name)
    schedule = build_schedule(cfg.schedule)
    fixed_z, fixed_y = fixed_inputs(cfg, ncls, device)
    torch.manual_seed(t.seed)
    step, images_seen, seconds = 0, 0, 0.0

    # ---- resume --------------------------------------------------------------------------------------
    if resume:
        ckpt = latest_good_checkpoint(run)
        if ckpt is None:
            raise GankitError(f"{run.path}: no complete checkpoint to resume from")
        weights, state = load_checkpoint(ckpt)
        G.load_state_dict({k[2:]: v for k, v in weights.items() if k.startswith("G.")})
        D.load_state_dict({k[2:]: v for k, v in weights.items() if k.startswith("D.")})
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        sampler.load_state_dict(state["sampler"])
        schedule.load_state_dict(state["schedule"])
        torch.set_rng_state(state["rng"]["torch"])
        if device.type == "cuda" and state["rng"].get("cuda"):
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        step, images_seen, seconds = state["step"], state["images_seen"], state["seconds"]
        truncate_stats(run, step)
        if step >= t.steps:
            print(f"{run.path}: already at step {step} of {t.steps}; raise train.steps (--steps) to go on")

    def make_fakes(n: int, *, train_mode: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        z = sample_noise(n, cfg.model, device=device)
        y = sample_labels(n, ncls, device=device) if conditional else None
        G.train(train_mode)
        return G(z, y), y

    def checkpoint() -> None:
        weights = {**{f"G.{k}": v for k, v in G.state_dict().items()},
                   **{f"D.{k}": v for k, v in D.state_dict().items()}}
        rng: dict[str, Any] = {"torch": torch.get_rng_state()}
        if device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state_all()
        state = {"opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "sampler": sampler.state_dict(),
                 "schedule": schedule.state_dict(), "rng": rng, "images_seen": images_seen, "seconds": seconds,
                 "data_info": {"name": info.name, "resolution": info.resolution, "channels": info.channels,
                               "class_names": list(info.class_names)}}
        save_checkpoint(run, step=step, weights=weights, state=state, keep=t.keep_checkpoints)

    def snapshot() -> None:
        G.eval()
        with torch.inference_mode():
            grid = to_uint8(G(fixed_z, fixed_y), value_range=vrange)
        G.train()
        save_image(make_grid(grid, scale=default_scale(info.resolution)), run.samples / f"step-{step:08d}.png")

    if step == 0:
        snapshot()  # the untrained generator: the first frame of the evolution

    # ---- train -------------------------------------------------------------------------------------------
    from tqdm import tqdm

    bar = tqdm(total=t.steps, initial=step, disable=not progress, desc=cfg.name, unit="step", dynamic_ncols=True)
    sums: dict[str, torch.Tensor] = {}
    count = 0
    last: dict[str, float] = {}
    tick = time.perf_counter()
    while step < t.steps:
        plan = schedule.plan(step, probe=lambda: {})
        logs: dict[str, torch.Tensor] = {}

        # ---- train D ----
        for _ in range(plan.d_steps):
            idx = sampler.next().to(device)
            real = to_float(images[idx], value_range=vrange)  # [B, C, H, W]
            real_y = labels[idx] if conditional else None
            n = real.shape[0]
            with torch.no_grad():
                fake, fake_y = make_fakes(n, train_mode=t.fakes_for_d == "train")
            G.train()
            t_real = t_fake = None
            if objective.uses_targets:
                t_real = d_targets(n, label=cfg.loss.real_label, noise=cfg.loss.label_noise, device=device)
                t_fake = d_targets(n, label=cfg.loss.fake_label, noise=cfg.loss.label_noise, device=device)
            if cfg.loss.d_update == "separate":
                opt_d.zero_grad()
                real_logits = D(real, real_y)
                loss_real = objective.d_real(real_logits, t_real)
                loss_real.backward()
                opt_d.step()
                opt_d.zero_grad()
                fake_logits = D(fake, fake_y)
                loss_fake = objective.d_fake(fake_logits, t_fake)
                loss_fake.backward()
                opt_d.step()
            else:
                opt_d.zero_grad()
                real_logits = D(real, real_y)
                fake_logits = D(fake, fake_y)
                loss_real = objective.d_real(real_logits, t_real)
                loss_fake = objective.d_fake(fake_logits, t_fake)
                (loss_real + loss_fake).backward()
                opt_d.step()
            images_seen += n
            logs["d_loss"] = 0.5 * (loss_real.detach() + loss_fake.detach())
            logs["d_loss_real"], logs["d_loss_fake"] = loss_real.detach(), loss_fake.detach()
            logs["d_acc_real"] = (real_logits.detach() > 0).float().mean()
            logs["d_acc_fake"] = (fake_logits.detach() < 0).float().mean()

        # ---- train G ----
        D.requires_grad_(False)  # G's step must not touch D's weights
        for _ in range(plan.g_steps):
            fake, fake_y = make_fakes(cfg.data.batch_size, train_mode=True)
            loss_g = objective.g(D(fake, fake_y))
            opt_g.zero_grad()
            loss_g.backward()
            opt_g.step()
            logs["g_loss"] = loss_g.detach()
        D.requires_grad_(True)
        step += 1
        bar.update(1)

        # ---- log / snapshot / checkpoint ----
        for k, v in logs.items():
            sums[k] = sums.get(k, 0.0) + v
        count += 1
        if step % t.log_every == 0 or step == t.steps:
            now = time.perf_counter()
            seconds += now - tick
            tick = now
            last = {k: float(v) / count for k, v in sums.items()}
            bad = [k for k, v in last.items() if not math.isfinite(v)]
            if bad:
                raise GankitError(f"training diverged at step {step}: {', '.join(f'{k}={last[k]}' for k in bad)}; "
                                  f"the last checkpoint in {run.checkpoints} is intact")
            append_stats(run, {"step": step, "kimg": images_seen / 1000, "seconds": round(seconds, 3), **last,
                               "lr_g": opt_g.lr, "lr_d": opt_d.lr})
            bar.set_postfix(d=f"{last.get('d_loss', 0):.3f}", g=f"{last.get('g_loss', 0):.3f}",
                            acc_r=f"{last.get('d_acc_real', 0):.2f}", acc_f=f"{last.get('d_acc_fake', 0):.2f}")
            sums, count = {}, 0
        if step % t.sample_every == 0 or step == t.steps:
            snapshot()
        if step % t.checkpoint_every == 0 or step == t.steps:
            seconds += time.perf_counter() - tick
            tick = time.perf_counter()
            checkpoint()
    bar.close()
    return TrainResult(run=run, step=step, images_seen=images_seen, last=last)
