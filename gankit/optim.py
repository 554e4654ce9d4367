"""Optimizers as configs name them, with Keras' gradient value clipping and time-based decay."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from gankit.config import OptimConfig


def match_layouts(opt: torch.optim.Optimizer) -> None:
    """Give each per-parameter state tensor (Adam's moments, RMSprop's square average) its parameter's strides.

    A checkpoint stores tensors contiguous, so after ``load_state_dict`` a channels_last weight has
    NCHW-ordered moments. PyTorch's fused Adam on the CPU (2.13) walks parameter, gradient and state in
    memory order and silently mixes up elements when their layouts differ (measured: a resumed
    channels_last run drifted from the run that never stopped; ``tests/test_optim.py`` shows it on one
    tensor), so the state is laid out like the parameter before the first step.
    """
    for group in opt.param_groups:
        for p in group["params"]:
            state = opt.state.get(p, {})
            for key, value in state.items():
                if torch.is_tensor(value) and value.shape == p.shape and value.stride() != p.stride():
                    state[key] = torch.empty_like(p, dtype=value.dtype).copy_(value)


def scheduled_lr(cfg: OptimConfig, iterations: int, step: int | None = None) -> float:
    """The configured learning rate after ``iterations`` updates of this optimizer (Keras' decay counts
    them) at the run's training ``step`` (the linear ramp-down counts those, as SNGAN's per-iteration
    shift does for both nets; default: ``iterations``)."""
    lr = cfg.lr / (1.0 + cfg.decay * iterations)
    if cfg.linear_decay:
        start, end = cfg.linear_decay
        done = min(max((iterations if step is None else step) - start, 0) / (end - start), 1.0)
        lr *= 1.0 - done * (1.0 - cfg.lr_final)
    return lr


class Optim:
    """A torch optimizer plus what Keras adds around it (``clipvalue`` and ``decay``) and a linear ramp-down.

    ``step()`` clips every gradient element to [-clip_value, clip_value], steps, then sets the
    learning rate for the next iteration to ``scheduled_lr``: ``lr / (1 + decay * iterations)``
    (Keras' legacy decay) times the ``linear_decay`` ramp's factor at the run's step (``at_step``).
    ``lr_scale`` multiplies that learning rate (divergence recovery lowers it; it is saved with the state).
    """

    def __init__(self, params: list[nn.Parameter], cfg: OptimConfig, *, device_type: str = "cpu") -> None:
        self.params = [p for p in params if p.requires_grad]
        self.cfg = cfg
        foreach = True if device_type == "cuda" else None
        if cfg.name == "adam":
            # Adam's fused kernel (one pass over all tensors) measured 7-13x faster than the default
            # per-tensor loop on the CPU (mnist-best's 0.9M params: 1.1 vs 14 ms a step; seed 003's
            # 3.4M: a quarter of its whole step). SGD and RMSprop stay on the default: their fused or
            # foreach versions measured no faster here (benchmarks/optim_step.py).
            self.opt: torch.optim.Optimizer = torch.optim.Adam(
                self.params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay,
                fused=True)
        elif cfg.name == "sgd":
            self.opt = torch.optim.SGD(self.params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                                       foreach=foreach)
        else:
            self.opt = torch.optim.RMSprop(self.params, lr=cfg.lr, alpha=cfg.alpha, eps=cfg.eps,
                                           momentum=cfg.momentum, weight_decay=cfg.weight_decay, foreach=foreach)
        self.iterations = 0
        self.run_step: int | None = None  # the training loop's step, for the linear ramp (see at_step)
        self.lr_scale = 1.0

    @property
    def lr(self) -> float:
        return float(self.opt.param_groups[0]["lr"])

    def zero_grad(self) -> None:
        self.opt.zero_grad(set_to_none=True)

    def step(self) -> None:
        if self.cfg.clip_value is not None:
            torch.nn.utils.clip_grad_value_(self.params, self.cfg.clip_value)
        self.opt.step()
        self.iterations += 1
        if self.cfg.decay or self.cfg.linear_decay:
            self._set_lr()

    def at_step(self, step: int) -> None:
        """The run is at training step ``step`` (steps completed): the linear ramp-down follows the run's steps,
        not this optimizer's updates, which run faster with n-critic, a D update per real and fake batch
        (seed 002), or a schedule that pauses one side."""
        self.run_step = step
        if self.cfg.linear_decay:
            self._set_lr()

    def _set_lr(self) -> None:
        lr = self.lr_scale * scheduled_lr(self.cfg, self.iterations, self.run_step)
        for group in self.opt.param_groups:
            group["lr"] = lr

    def set_lr_scale(self, scale: float) -> None:
        """Run at ``scale`` times the configured (decayed) learning rate from now on."""
        self.lr_scale = float(scale)
        self._set_lr()

    def state_dict(self) -> dict[str, Any]:
        return {"opt": self.opt.state_dict(), "iterations": self.iterations, "lr_scale": self.lr_scale,
                "kind": type(self.opt).__name__}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # PyTorch loads one optimizer's state into another without a word and fails at the next step:
        # compare the kind (older checkpoints do not name it: whether both have Adam's betas)
        kind, mine = state.get("kind"), type(self.opt).__name__
        groups = state["opt"].get("param_groups") or [{}]
        if kind is not None and kind != mine:
            raise ValueError(f"the checkpoint holds {kind} state, the config asks for {mine}")
        if kind is None and ("betas" in groups[0]) != ("betas" in self.opt.param_groups[0]):
            raise ValueError(f"the checkpoint holds another optimizer's state than {mine}")
        self.opt.load_state_dict(state["opt"])
        match_layouts(self.opt)
        self.iterations = int(state["iterations"])
        self.lr_scale = float(state.get("lr_scale", 1.0))  # checkpoints from before divergence recovery
        # the learning rate comes from the config, not the saved state, so `--resume --set optim.g.lr=...`
        # takes effect; with an unchanged config this is the very value that was saved
        self.set_lr_scale(self.lr_scale)
