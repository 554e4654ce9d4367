"""Training on several processes with torch.distributed (``torchrun``): the helpers the loop hooks into.

One process is one rank. Under ``torchrun`` (which sets ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``) the process group is started with NCCL on GPUs and gloo on CPUs;
without it every helper here is the single-process identity, so the loop reads the same either way.

How a step is split, so that N processes compute what one process computes on the global batch:

* every rank draws the same *global* batch of indices from the same seeded sampler and keeps its
  contiguous slice (:func:`shard`); the sampler's state is therefore global, and a run resumes on any
  number of processes;
* the random inputs (noise, labels, noisy targets) are drawn from one *shared* generator seeded with
  the run seed on every rank, the global batch at a time, then sliced (:func:`shared_draw`); in one
  process the same draws come from torch's global generator, seeded the same way;
* each rank's own torch generator (dropout and anything else drawn inside the nets) is seeded from
  the run seed and the rank (:func:`seed_local`), so ranks do not repeat each other's masks;
* losses are per-rank means over equal slices, and DDP averages gradients, which is the gradient of
  the global batch's mean loss. Logged values are averaged over ranks (:func:`average_`).
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import math
import os
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from gankit.errors import GankitError, first_line

TIMEOUT_ENV = "GANKIT_DIST_TIMEOUT"  # seconds a collective waits for the other ranks (default 600)
FAIL_ENV = "GANKIT_DIST_FAIL"  # test hook: "RANK:STEP" makes that rank raise at that step
LOCAL_SEED_STRIDE = 7_919  # rank r's own generator is seeded with seed + r * this (rank 0: the run seed)
_STOP_CODES = (None, "time limit", "SIGTERM", "SIGINT")


# ---- who am I ------------------------------------------------------------------------------------------------

def _env_int(name: str, default: str) -> int:
    """A whole-number environment variable of the launcher, or a clear error naming it."""
    raw = os.environ.get(name, default)
    try:
        return int(raw)
    except ValueError:
        raise GankitError(f"{name} must be a whole number, got {raw!r} (torchrun sets it; unset it to run as "
                          "one process)") from None


def launched() -> bool:
    """True in a process started by torchrun (or set up like one) with more than one rank."""
    return _env_int("WORLD_SIZE", "1") > 1


def active() -> bool:
    """True when a process group of more than one rank is running."""
    return torch.distributed.is_available() and torch.distributed.is_initialized() and world() > 1


def rank() -> int:
    """This process's rank (0 in a single process)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return 0


def world() -> int:
    """The number of ranks (1 in a single process)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return 1


def is_main() -> bool:
    """Rank 0: the only rank that writes the run directory and prints progress."""
    return rank() == 0


# ---- start and stop ----------------------------------------------------------------------------------------------

def timeout() -> datetime.timedelta:
    """How long a collective waits for the other ranks before failing (rank 0 writing a checkpoint or
    evaluating makes the others wait, so this is minutes, not seconds)."""
    raw = os.environ.get(TIMEOUT_ENV, "600")
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not seconds > 0 or math.isinf(seconds):
        raise GankitError(f"{TIMEOUT_ENV} must be a positive number of seconds, got {raw!r}")
    return datetime.timedelta(seconds=seconds)


def local_device(device: str | torch.device) -> torch.device:
    """``device`` resolved (``auto``: a GPU when there is one), as ``cuda:LOCAL_RANK`` in a rank of a torchrun job
    on GPUs: each rank computes on its own GPU."""
    from gankit.train.build import resolve_device

    device = resolve_device(device) if isinstance(device, str) else device
    if launched() and device.type == "cuda":
        local = _env_int("LOCAL_RANK", "0")
        if local >= torch.cuda.device_count():
            raise GankitError(f"this rank's LOCAL_RANK is {local}, but PyTorch sees {torch.cuda.device_count()} "
                              "GPU(s) here: start at most one process per GPU (--nproc_per_node)")
        return torch.device("cuda", local)
    return device


def init(device: torch.device) -> torch.device:
    """Start the process group when launched by torchrun (idempotent) and return this rank's device:
    ``cuda:LOCAL_RANK`` on GPUs, ``device`` otherwise."""
    if not launched():
        return device
    device = local_device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not torch.distributed.is_initialized():
        for var in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
            if var not in os.environ:
                raise GankitError(f"WORLD_SIZE is set but {var} is not: launch with torchrun "
                                  "(python -m torch.distributed.run) or set the variables it sets")
        size, me = _env_int("WORLD_SIZE", "1"), _env_int("RANK", "0")
        _env_int("MASTER_PORT", "0")
        if not 0 <= me < size:
            raise GankitError(f"RANK is {me}, but a job of WORLD_SIZE {size} has ranks 0 to {size - 1}")
        backend = "nccl" if device.type == "cuda" else "gloo"
        where = f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
        try:
            torch.distributed.init_process_group(backend, timeout=timeout(),
                                                 device_id=device if device.type == "cuda" else None)
        except (torch.distributed.DistError, RuntimeError, ValueError) as exc:
            raise GankitError(f"rank {me} of {size} could not join the job at {where} ({first_line(exc)}): are the "
                              f"other ranks running, with the same MASTER_ADDR and MASTER_PORT? ({TIMEOUT_ENV} "
                              "sets how long to wait)") from None
        atexit.register(shutdown)
    return device


_BROKEN = False  # this rank ended in an error while its group was up: it cannot be torn down safely


def broken() -> bool:
    """Whether this rank's command ended in an error while its process group was up (see :func:`session`):
    leave with ``os._exit`` once the error is printed, skipping the group's teardown and the interpreter's."""
    return _BROKEN


def shutdown() -> None:
    """Leave the process group (safe to call twice; a broken group is left alone, see :func:`broken`)."""
    if _BROKEN:
        return
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


@contextlib.contextmanager
def session(device_name: str = "auto") -> Iterator[None]:
    """Run a command as one rank of a torchrun job: start the group, leave it at the end, and turn a
    failed collective (another rank died, or did not answer within the timeout) into a clear error."""
    from gankit.train.build import resolve_device

    if launched():
        init(resolve_device(device_name))
    try:
        yield
        barrier()  # every rank returns once rank 0 has finished writing
    except BaseException as exc:
        if not active():
            raise
        # An error with the group up leaves gloo's and DDP's threads mid-operation, on this rank (a failed
        # collective) or on the others (this rank's own error). Tearing the group down, or the interpreter's
        # normal exit, can then abort ("terminate called without an active exception") or hang for good:
        # ProcessGroupGloo's destructor joins a worker thread that is still releasing a finished all-reduce
        # and waits for the GIL, which an exiting interpreter never gives back. The other ranks then wait in
        # their next collective until the timeout (10 minutes), and torchrun with them. So the CLI leaves
        # with os._exit once it has printed the error; the others see the connection close at once.
        global _BROKEN
        _BROKEN = True
        if isinstance(exc, RuntimeError) and _from_collective(exc):
            raise GankitError(f"rank {rank()} of {world()}: lost contact with the other ranks "
                              f"({first_line(exc)}); another rank probably failed: see its error above") from None
        raise
    finally:
        shutdown()


def _from_collective(exc: BaseException) -> bool:
    """Whether ``exc`` was raised inside torch.distributed or DDP (gloo's "Connection closed by peer",
    NCCL errors, timeouts), as opposed to a bug or bad input in gankit itself."""
    if isinstance(exc, torch.distributed.DistError):
        return True
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = tb.tb_frame.f_code.co_filename.replace(os.sep, "/") if tb else ""
    if "/torch/distributed/" in where:
        return True
    if "/torch/nn/parallel/" in where:  # DDP: its collectives, but not its complaints about how it is used
        return "find_unused_parameters" not in str(exc)
    # DDP's gradient all-reduce runs inside backward(), whose error surfaces from autograd
    return any(word in str(exc) for word in ("gloo", "NCCL", "ProcessGroup", "Connection closed by peer"))


def barrier() -> None:
    """Wait for every rank (nothing in a single process)."""
    if active():
        torch.distributed.barrier()


def from_main(obj: Any) -> Any:
    """Rank 0's value of a picklable ``obj`` on every rank (e.g. a run directory named after the time)."""
    if not active():
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def fail_for_test(step: int) -> None:
    """Test hook: with GANKIT_DIST_FAIL=RANK:STEP, that rank raises at that step (crash handling tests)."""
    spec = os.environ.get(FAIL_ENV)
    if spec and spec.split(":") == [str(rank()), str(step)]:
        raise GankitError(f"rank {rank()} fails at step {step} ({FAIL_ENV}={spec})")


# ---- splitting the global batch -----------------------------------------------------------------------------------

def local_batch(global_batch: int, what: str) -> int:
    """This rank's share of a global batch, which must split evenly (so every rank's mean weighs the same)."""
    if global_batch % world():
        raise GankitError(f"{what} = {global_batch} does not split evenly over {world()} processes; "
                          f"use a multiple of {world()}")
    return global_batch // world()


def shard(x: torch.Tensor) -> torch.Tensor:
    """This rank's contiguous slice of a global batch ``[B, ...]`` -> ``[B / world, ...]``."""
    if not active():
        return x
    n = local_batch(len(x), "the batch")
    return x[rank() * n : (rank() + 1) * n]


def chunk(n: int) -> tuple[int, int]:
    """This rank's ``[start, stop)`` of ``n`` items split as evenly as possible (for evaluation)."""
    r, w = rank(), world()
    return r * n // w, (r + 1) * n // w


def shared_generator(seed: int) -> torch.Generator | None:
    """The generator every rank draws the global batch's random inputs from; None in one process,
    where torch's global generator (seeded with the same ``seed``) plays its part."""
    return torch.Generator().manual_seed(seed) if active() else None


def shared_draw(fn: Callable[..., torch.Tensor | None], n_local: int, *args: Any, device: torch.device,
                gen: torch.Generator | None, **kwargs: Any) -> torch.Tensor | None:
    """``fn(n, *args, device=, generator=, **kwargs)`` for this rank's ``n_local`` rows: in one process a
    plain draw; under DDP the global draw of ``n_local * world`` rows from the shared generator, sliced."""
    if gen is None:
        return fn(n_local, *args, device=device, **kwargs)
    out = fn(n_local * world(), *args, device=torch.device("cpu"), generator=gen, **kwargs)
    return None if out is None else shard(out).to(device)


def seed_local(seed: int, step: int = 0) -> None:
    """Seed this rank's own torch generator from the run seed, the rank and (on resume) the step;
    rank 0 of a fresh run keeps the run seed. Nothing to do in one process."""
    if active() and (rank() or step):
        torch.manual_seed(seed + rank() * LOCAL_SEED_STRIDE + step)


def rng_state(gen: torch.Generator | None) -> torch.Tensor:
    """The state of the stream the random inputs come from (saved as the checkpoint's ``rng.torch``)."""
    return torch.get_rng_state() if gen is None else gen.get_state()


def set_rng_state(state: torch.Tensor, gen: torch.Generator | None, *, seed: int, step: int) -> None:
    """Restore the random inputs' stream from a checkpoint of any number of processes."""
    if gen is None:
        torch.set_rng_state(state)
    else:
        gen.set_state(state)
        seed_local(seed, step)


# ---- nets --------------------------------------------------------------------------------------------------------

def wrap(net: nn.Module, device: torch.device, *, sync_batchnorm: bool = False,
         find_unused: bool = False) -> nn.Module:
    """``net`` in DistributedDataParallel for the training updates (``net`` itself in one process).

    Keep using the bare ``net`` for everything that runs on one rank or needs no gradient sync
    (sample grids, probes, evaluation, state dicts, and D inside G's step, where D's gradients
    are not wanted): a DDP forward would wait for the other ranks. Buffers (batch norm's running
    statistics) are broadcast from rank 0 at every DDP forward; ``sync_batchnorm`` instead computes
    batch statistics over the global batch (needs CUDA). ``find_unused``: some forward passes leave
    parameters out (an AC-GAN class head that a pass does not read), which DDP must be told.
    """
    if not active():
        return net
    if sync_batchnorm:
        if device.type != "cuda":
            raise GankitError("train.sync_batchnorm needs CUDA GPUs (PyTorch's SyncBatchNorm has no CPU kernel)")
        net = nn.SyncBatchNorm.convert_sync_batchnorm(net)  # converts the children in place
    if not any(p.requires_grad for p in net.parameters()):
        return net
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(net, device_ids=ids, find_unused_parameters=find_unused)


# ---- agreeing on values --------------------------------------------------------------------------------------------

def average_(logs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Replace each logged scalar with its mean over ranks (in place; one collective for all)."""
    if not active() or not logs:
        return logs
    keys = sorted(logs)
    packed = torch.stack([logs[k].detach().double().reshape(()) for k in keys]).to(_collective_device())
    torch.distributed.all_reduce(packed)
    packed /= world()
    for k, v in zip(keys, packed.cpu(), strict=True):
        logs[k] = v
    return logs


def agree_stop(reason: str | None) -> str | None:
    """Every rank stops at the same step: the strongest reason any rank has (signals, time limit)."""
    if not active():
        return reason
    code = torch.tensor([_STOP_CODES.index(reason)], device=_collective_device())
    torch.distributed.all_reduce(code, op=torch.distributed.ReduceOp.MAX)
    return _STOP_CODES[int(code)]


def all_true(flag: bool) -> bool:
    """Whether ``flag`` holds on every rank (e.g. a cache hit: ranks that took different paths would wait
    for each other's collectives forever)."""
    if not active():
        return flag
    t = torch.tensor([int(flag)], device=_collective_device())
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MIN)
    return bool(t.item())


def _collective_device() -> torch.device:
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def gather_rows(x: torch.Tensor) -> torch.Tensor:
    """Every rank's ``[n_r, ...]`` rows concatenated in rank order, on every rank (sizes may differ)."""
    if not active():
        return x
    dev = _collective_device()
    sizes = [torch.zeros(1, dtype=torch.long, device=dev) for _ in range(world())]
    torch.distributed.all_gather(sizes, torch.tensor([len(x)], device=dev))
    most = int(max(sizes))
    padded = torch.zeros(most, *x.shape[1:], dtype=x.dtype, device=dev)
    padded[: len(x)] = x.to(dev)
    parts = [torch.empty_like(padded) for _ in range(world())]
    torch.distributed.all_gather(parts, padded)
    return torch.cat([p[: int(s)] for p, s in zip(parts, sizes, strict=True)]).to(x.device)


def map_rows(fn: Callable[[torch.Tensor], Any], x: torch.Tensor) -> Any:
    """``fn(x)`` for a ``fn`` that treats rows independently (feature extractors), with the rows split over the
    ranks and the results (a tensor or a tuple of tensors) gathered back in order on every rank."""
    if not active() or len(x) < world():
        return fn(x)
    lo, hi = chunk(len(x))
    out = fn(x[lo:hi])
    return tuple(gather_rows(o) for o in out) if isinstance(out, tuple) else gather_rows(out)


class SyncedProbe:
    """A schedule's probe whose measurements are averaged over ranks, so every rank's schedule makes
    the same decision (ranks that disagreed on who trains would wait for each other forever)."""

    def __init__(self, probe: Any) -> None:
        self.probe = probe

    def batch(self) -> dict[str, float]:
        return _mean_floats(self.probe.batch())

    def val(self) -> dict[str, float]:
        return _mean_floats(self.probe.val())


def _mean_floats(m: dict[str, float]) -> dict[str, float]:
    out = average_({k: torch.tensor(v, dtype=torch.float64) for k, v in m.items()})
    return {k: float(v) for k, v in out.items()}


def synced_probe(probe: Any) -> Any:
    """``probe`` itself in one process, else a :class:`SyncedProbe` around it."""
    return SyncedProbe(probe) if active() else probe
