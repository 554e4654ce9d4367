"""What gankit.viz adds to a training run, behind one object the loop calls once per step.

* train.judge_every: seed 000's judged grid into RUN/judge/step-NNNNNNNN.png (fixed real images and noise);
* train.tensorboard: RUN/tensorboard/ mirrors the stats and pictures (see :mod:`gankit.viz.tensorboard`);
* train.report_every: RUN/report.html rewritten, refreshing itself until the last step.

A picture that fails to be written warns and training goes on: hours of training are worth more than it.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from gankit.config import Config
from gankit.run import RunDir

JUDGE_N = 16  # at most this many real and generated images in the judged grid written during training
LIVE_REFRESH_S = 30  # how often an open report page reloads itself while the run trains


class Watcher:
    """Judged grids, TensorBoard and the live report during training, as the config asks."""

    def __init__(self, cfg: Config, run: RunDir, *, images: torch.Tensor, labels: torch.Tensor,
                 resume: bool = False) -> None:
        from gankit.viz.judge import fixed_judge_inputs
        from gankit.viz.tensorboard import TensorBoardLog, wanted

        self.cfg, self.run = cfg, run
        t = cfg.train
        self.judge_inputs = fixed_judge_inputs(cfg, images, labels, n=min(JUDGE_N, t.sample_grid),
                                               seed=t.seed) if t.judge_every else None
        self.tb = TensorBoardLog(run.path, resume=resume) if wanted(t.tensorboard) else None
        self._failed: set[str] = set()

    def _safely(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001  (a picture must not stop training)
            if what not in self._failed:
                warnings.warn(f"could not write the {what} ({type(exc).__name__}: {exc}); training goes on",
                              stacklevel=3)
                self._failed.add(what)

    def _judge(self, step: int, G: nn.Module, D: nn.Module) -> None:
        from gankit.train.build import value_range
        from gankit.viz.grid import save_image
        from gankit.viz.judge import judge, judged_grid

        assert self.judge_inputs is not None
        real, real_y, z = self.judge_inputs
        j = judge(G, D, real=real, real_y=real_y, z=z, value_range=value_range(self.cfg.model),
                  loss=self.cfg.loss.name, step=step)
        save_image(judged_grid(j), self.run.path / "judge" / f"step-{step:08d}.png")

    def after_step(self, step: int, *, G: nn.Module, D: nn.Module, final: bool) -> None:
        """Call after a step's samples and checkpoint are written; ``final``: the loop stops after it."""
        t = self.cfg.train
        due = lambda every: bool(every) and (step % every == 0 or final)  # noqa: E731
        if due(t.judge_every):
            self._safely("judged grid", self._judge, step, G, D)
        if self.tb is not None and (due(t.log_every) or due(t.sample_every) or due(t.judge_every)):
            self._safely("TensorBoard events", self.tb.sync)
        if due(t.report_every):
            from gankit.viz.report import write_report

            self._safely("report", write_report, self.run.path, refresh=None if final else LIVE_REFRESH_S)

    def rewound(self) -> None:
        """The run rolled back and ``stats.jsonl`` was cut short: mirror to TensorBoard from its new end."""
        if self.tb is not None and self.run.stats_path.exists():
            self.tb.offset = min(self.tb.offset, self.run.stats_path.stat().st_size)

    def close(self) -> None:
        """Flush TensorBoard (call when training ends)."""
        if self.tb is not None:
            self._safely("TensorBoard events", self.tb.close)
