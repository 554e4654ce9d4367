"""Batches of indices into an in-memory dataset: seeded, infinite, resumable, no worker processes."""

from __future__ import annotations

from typing import Any

import torch

from gankit.errors import GankitError

MODES = ("shuffle", "random", "sequential")


class BatchSampler:
    """Infinite stream of index batches ``[B]`` over ``n`` items.

    Modes: ``shuffle`` (a fresh permutation every epoch, batches may span epochs), ``random``
    (independent draws with replacement, as ``np.random.randint`` in seeds 000-003), and
    ``sequential`` (in order, starting over before a partial batch, as seed 004's ``data[start:start+B]``).
    ``state_dict()`` / ``load_state_dict()`` make a resumed stream continue exactly.
    """

    def __init__(self, n: int, batch_size: int, *, mode: str = "shuffle", seed: int = 0) -> None:
        if n <= 0:
            raise GankitError("the dataset is empty: no images to sample")
        if batch_size <= 0:
            raise GankitError(f"batch size must be positive, got {batch_size}")
        if mode not in MODES:
            raise GankitError(f"unknown sampler mode {mode!r}; choose one of {', '.join(MODES)}")
        if mode == "sequential" and batch_size > n:
            raise GankitError(f"batch size {batch_size} is larger than the dataset ({n} images)")
        self.n, self.batch_size, self.mode = n, batch_size, mode
        self.gen = torch.Generator().manual_seed(seed)
        self.epoch = 0
        self.pos = 0
        self.order = self._new_order()

    def _new_order(self) -> torch.Tensor:
        if self.mode == "shuffle":
            return torch.randperm(self.n, generator=self.gen)
        return torch.arange(self.n)

    def next(self) -> torch.Tensor:
        """The next batch of indices, int64 ``[batch_size]``."""
        if self.mode == "random":
            return torch.randint(0, self.n, (self.batch_size,), generator=self.gen)
        if self.mode == "sequential":
            if self.pos + self.batch_size > self.n:
                self.pos, self.epoch = 0, self.epoch + 1
            self.pos += self.batch_size
            return self.order[self.pos - self.batch_size : self.pos]
        chunks = []
        need = self.batch_size
        while need > 0:
            take = min(need, self.n - self.pos)
            chunks.append(self.order[self.pos : self.pos + take])
            self.pos += take
            need -= take
            if self.pos == self.n:
                self.epoch += 1
                self.pos = 0
                self.order = self._new_order()
        return torch.cat(chunks) if len(chunks) > 1 else chunks[0]

    def state_dict(self) -> dict[str, Any]:
        """Tensors and numbers that restore this stream exactly."""
        return {"gen": self.gen.get_state(), "order": self.order.clone(), "epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        order = state["order"]
        if order.numel() != self.n:
            raise GankitError(f"sampler state is for {order.numel()} images but the dataset has {self.n}")
        self.gen.set_state(state["gen"])
        self.order = order.clone()
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])
