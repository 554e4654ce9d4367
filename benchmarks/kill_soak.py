"""Kill real training with SIGKILL at random moments, resume after each kill, and check nothing is lost.

    .venv/bin/python benchmarks/kill_soak.py --kills 12 --seed 0

Each segment runs `gankit train` in a subprocess (tiny seed-002 nets on the embedded MNIST demo set,
one thread, a checkpoint every few steps) and kills it with SIGKILL:

- ``train``: once training has reached a random step, after a random extra delay;
- ``mid-write``: while a checkpoint is being written (the test-only GANKIT_TEST_CHECKPOINT_PAUSE makes
  save_checkpoint pause after each of its files, and the kill lands at a random point in those pauses;
  the half-written folder is seen on disk right after the kill);
- ``startup``: at a random moment in the first seconds (imports, data loading, creating the run).

After each kill the run directory must load (config, stats, newest good checkpoint), the work lost
(last logged step minus the step resumed from) must be at most one checkpoint interval, and at the
end the resumed run's final weights and logged losses must equal those of an uninterrupted run.
Prints a table and writes benchmarks/out/kill_soak.json. tests/test_reliability.py runs a short form.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from gankit import config as C  # noqa: E402
from gankit.run import PAUSE_ENV, RunDir, latest_good_checkpoint, load_checkpoint, read_stats  # noqa: E402

PRESET = "seed002-mlp-mnist"


def soak_overrides(steps: int, checkpoint_every: int) -> list[str]:
    """A seconds-long deterministic run: small nets, one thread, every step logged."""
    return ["data.dataset='mnist-demo'", "model.g.hidden=[32, 64]", "model.d.hidden=[64]", "train.threads=1",
            f"train.steps={steps}", f"train.checkpoint_every={checkpoint_every}", "train.log_every=1",
            "train.sample_every=50", "train.sample_grid=4", "train.keep_checkpoints=3", "train.device='cpu'"]


@dataclass
class Kill:
    """One SIGKILL and what the run directory looked like after it."""

    mode: str
    resumed_from: int  # the step the killed segment started from
    reached: int  # the last step logged before the kill
    resumes_at: int  # the step the next segment resumes from (newest good checkpoint)
    lost: int  # reached - resumes_at: steps of work to redo
    mid_write_seen: bool  # a half-written checkpoint folder was on disk right after the kill
    mid_write_files: list[str]  # what that folder held (how far the write had got)
    loadable: bool
    seconds: float


@dataclass
class Report:
    kills: list[Kill] = field(default_factory=list)
    checkpoint_every: int = 0
    steps: int = 0
    finished: bool = False
    weights_equal: bool = False
    losses_equal: bool = False
    leftovers: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _env(pause: float | None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    env.pop(PAUSE_ENV, None)
    if pause:
        env[PAUSE_ENV] = str(pause)
    return env


def _args(run: Path, overrides: list[str]) -> list[str]:
    """`gankit train` arguments: resume the run if it exists, else start it."""
    if (run / "config.toml").exists():
        return ["train", "--resume", str(run), "--no-progress"]
    sets = [a for o in overrides for a in ("--set", o)]
    return ["train", "--preset", PRESET, *sets, "--out", str(run), "--no-progress"]


class _Forked:
    """`gankit train` in a forked child: a real separate process, without paying torch's import again
    (seconds here), so the short test stays short. Same poll/send_signal/wait as subprocess.Popen."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.returncode: int | None = None
        self.pid = os.fork()
        if self.pid == 0:  # the child: run the CLI, never return into the parent's code
            code = 1
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 1)
                os.dup2(devnull, 2)
                os.environ.clear()
                os.environ.update(env)
                from gankit.cli import main as cli

                cli.main(args=args, standalone_mode=False)
                code = 0
            except BaseException:  # noqa: BLE001  (the exit status says it failed)
                code = 1
            finally:
                os._exit(code)

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def wait(self) -> int:
        if self.returncode is None:
            self.returncode = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
        return self.returncode

    def communicate(self) -> tuple[str, str]:
        self.wait()
        return "", "(forked child: output not kept)"


def _start(run: Path, overrides: list[str], env: dict[str, str], fork: bool) -> subprocess.Popen | _Forked:
    if fork:
        return _Forked(_args(run, overrides), env)
    return subprocess.Popen([sys.executable, "-m", "gankit", *_args(run, overrides)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _finish(run: Path, overrides: list[str], fork: bool) -> tuple[int, str]:
    """Run `gankit train` to the end: (exit status, its output's tail)."""
    if fork:
        return _Forked(_args(run, overrides), _env(None)).wait(), ""
    proc = subprocess.run([sys.executable, "-m", "gankit", *_args(run, overrides)], cwd=REPO, env=_env(None),
                          capture_output=True, text=True)
    return proc.returncode, (proc.stdout + proc.stderr)[-3000:]


def _logged_step(run: RunDir) -> int:
    steps = [r["step"] for r in read_stats(run, "train")]
    return max(steps, default=0)


def _partial_checkpoint(run: RunDir, since: float = 0.0) -> bool:
    """A checkpoint folder being written (made after ``since``, so not the leftover of an earlier kill)."""
    try:
        return any(p.name.endswith(".tmp") and p.stat().st_mtime > since for p in run.checkpoints.iterdir())
    except OSError:  # no folder yet, or the temporary one was renamed while we looked
        return False


def _fresh(path: Path, since: float) -> bool:
    """``path`` was written after ``since`` (stats left by the previous segment do not count)."""
    try:
        return path.stat().st_mtime > since
    except OSError:
        return False


def _good_step(run: RunDir) -> tuple[int, bool]:
    """(step of the newest good checkpoint or 0, whether the run directory loads)."""
    if not run.config_path.exists():
        return 0, True  # killed before the run was created: nothing to load yet, a fresh start follows
    try:
        C.load_file(run.config_path)
        read_stats(run)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ckpt = latest_good_checkpoint(run)
        if ckpt is None:
            return 0, True
        _, state = load_checkpoint(ckpt)
        return int(state["step"]), True
    except Exception:  # noqa: BLE001  (any failure to load is what this harness reports)
        return -1, False


def _wait(proc: subprocess.Popen, until, timeout: float = 300) -> bool:
    """Poll ``until()`` while ``proc`` runs; False if it ended first."""
    deadline = time.time() + timeout
    while proc.poll() is None:
        if until():
            return True
        if time.time() > deadline:
            raise TimeoutError("segment did not reach its kill point")
        time.sleep(0.005)
    return False


def soak(run_path: str | Path, *, kills: int, seed: int = 0, steps: int = 400, checkpoint_every: int = 10,
         pause: float = 0.25, modes: tuple[str, ...] = ("train", "mid-write", "train", "startup"),
         reference: Path | None = None, fork: bool = False, log=print) -> Report:
    """Kill and resume ``kills`` times, finish, and compare with an uninterrupted run (see the module doc).

    ``fork``: run each segment in a forked child of this process instead of a fresh `python -m gankit`.
    """
    rng = random.Random(seed)
    run = RunDir(run_path)
    overrides = soak_overrides(steps, checkpoint_every)
    rep = Report(checkpoint_every=checkpoint_every, steps=steps)
    t0 = time.perf_counter()
    ref = RunDir(reference or Path(str(run.path) + "-reference"))
    if fork:  # the uninterrupted run first, in this process: it also warms up what the children inherit
        _reference(ref, run, overrides, fork=True, steps=steps)
    resume_step = 0
    n = 0
    while n < kills:
        mode = modes[n % len(modes)]
        start = time.perf_counter()
        env = _env(pause if mode == "mid-write" else None)
        launched = time.time()
        proc = _start(run.path, overrides, env, fork)
        if mode == "startup":
            time.sleep(rng.uniform(0.1, 3.0))
            alive = proc.poll() is None
        elif mode == "mid-write":
            alive = _wait(proc, lambda since=launched, past=resume_step: _partial_checkpoint(run, since)
                          and _fresh(run.stats_path, since) and _logged_step(run) > past)
            time.sleep(rng.uniform(0.0, 3 * pause))
        else:
            target = resume_step + rng.randint(1, 3 * checkpoint_every)
            alive = _wait(proc, lambda target=target, since=launched: _fresh(run.stats_path, since)
                          and _logged_step(run) >= target)
            time.sleep(rng.uniform(0.0, 0.05))
        if not alive or proc.poll() is not None:
            _, err = proc.communicate()
            raise RuntimeError(f"segment ended before its kill (steps too few?): rc {proc.returncode}\n{err[-2000:]}")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        mid = _partial_checkpoint(run, launched)
        files = sorted(f.name for d in run.checkpoints.glob(".*.tmp") for f in d.iterdir()) if mid else []
        reached = _logged_step(run)
        good, loadable = _good_step(run)
        k = Kill(mode=mode, resumed_from=resume_step, reached=reached, resumes_at=good, lost=reached - good,
                 mid_write_seen=mid, mid_write_files=files, loadable=loadable and good >= 0,
                 seconds=round(time.perf_counter() - start, 2))
        rep.kills.append(k)
        log(f"kill {n + 1:2d} {mode:9s} from {resume_step:4d} reached {reached:4d} resumes at {good:4d} "
            f"lost {k.lost:3d}  loadable {'yes' if k.loadable else 'NO'}"
            + (f"  killed mid-write, written so far: {', '.join(files) or 'nothing'}" if mid else ""))
        resume_step = max(good, 0)
        n += 1
    code, output = _finish(run.path, overrides, fork)
    rep.finished = code == 0 and _logged_step(run) == steps
    if not rep.finished:
        log(output)
    if not fork:
        _reference(ref, run, overrides, fork=False, steps=steps)
    rep.weights_equal = weights_equal(run, ref)
    rep.losses_equal = losses(run) == losses(ref)
    rep.leftovers = sorted(p.name for p in run.checkpoints.iterdir() if p.name.endswith(".tmp"))
    rep.seconds = round(time.perf_counter() - t0, 1)
    return rep


def _reference(ref: RunDir, run: RunDir, overrides: list[str], *, fork: bool, steps: int) -> None:
    """The uninterrupted run (kept when one with the same config exists): in this process when ``fork``."""
    if ref.config_path.exists() and _logged_step(ref) == steps and (
            not run.config_path.exists() or C.load_file(ref.config_path) == C.load_file(run.config_path)):
        return
    shutil.rmtree(ref.path, ignore_errors=True)
    if fork:
        from gankit.cli import main as cli

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cli.main(args=_args(ref.path, overrides), standalone_mode=False)
        return
    code, output = _finish(ref.path, overrides, fork=False)
    if code != 0:
        raise RuntimeError(f"the uninterrupted reference run failed:\n{output}")


def weights_equal(a: RunDir, b: RunDir) -> bool:
    """Bit-for-bit equality of the newest checkpoints' weights."""
    wa = load_file(str(latest_good_checkpoint(a) / "weights.safetensors"))
    wb = load_file(str(latest_good_checkpoint(b) / "weights.safetensors"))
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def losses(run: RunDir) -> list[dict]:
    """The logged records without wall-clock time."""
    return [{k: v for k, v in r.items() if k != "seconds"} for r in read_stats(run, "train")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--checkpoint-every", type=int, default=10)
    ap.add_argument("--pause", type=float, default=0.25, help="seconds paused after each checkpoint file (mid-write)")
    ap.add_argument("--out", default="benchmarks/out/kill_soak", help="relative to the current directory")
    args = ap.parse_args()
    out = Path(args.out).absolute()  # the trainer runs from the repository root: one place for both
    out.mkdir(parents=True, exist_ok=True)
    run = out / "run"
    if run.exists():
        shutil.rmtree(run)
    rep = soak(run, kills=args.kills, seed=args.seed, steps=args.steps, checkpoint_every=args.checkpoint_every,
               pause=args.pause, reference=out / "reference")
    lost = [k.lost for k in rep.kills]
    survived = sum(k.loadable for k in rep.kills)
    print(f"\nkills survived (run directory loadable after the kill): {survived}/{len(rep.kills)}")
    print(f"mid-write kills with a half-written checkpoint on disk: {sum(k.mid_write_seen for k in rep.kills)}")
    print(f"work lost per kill (steps): max {max(lost)}, mean {sum(lost) / len(lost):.1f} "
          f"(bound: checkpoint interval {rep.checkpoint_every})")
    print(f"finished: {rep.finished}; final weights equal to an uninterrupted run: {rep.weights_equal}; "
          f"logged losses equal: {rep.losses_equal}; leftover temp folders: {rep.leftovers or 'none'}")
    print(f"wall time {rep.seconds} s")
    out.with_suffix(".json").write_text(json.dumps(asdict(rep), indent=1))  # benchmarks/out/kill_soak.json
    ok = (all(k.loadable and 0 <= k.lost <= rep.checkpoint_every for k in rep.kills) and rep.finished
          and rep.weights_equal and rep.losses_equal and not rep.leftovers)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
