"""Training under torch.distributed: 2 gloo processes on this CPU give what one process gives on the global batch,
checkpoints move between process counts, and a crashing rank ends the job with a clear error instead of a hang."""

from __future__ import annotations

import datetime
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from gankit import config as C
from gankit import dist
from gankit.errors import GankitError
from gankit.run import RunDir, read_stats
from gankit.train.loop import train

ROOT = Path(__file__).resolve().parents[1]
# Seed 002's MLP GAN as written (SGD, D on real then fake), small, and without G's batch norm: per-rank batch
# statistics are the one thing DDP cannot make equal to a single process's (SyncBatchNorm needs CUDA).
# fp32 throughout: on a CPU with bf16 units `auto` picks bf16 autocast, whose rounding of a product over a
# batch of 8 differs from its two halves' by more than the comparison's 1e-5.
OVERRIDES = ["train.precision='fp32'", "data.dataset='mnist-demo'", "data.limit=256", "data.batch_size=8",
             "model.g.batch_norm=false",
             "model.g.hidden=[32,64]", "model.d.hidden=[64,32]", "train.log_every=1", "train.checkpoint_every=2",
             "train.sample_every=2", "train.sample_grid=4", "train.steps=4",
             "train.eval_every=4", "train.eval_n=51"]  # an odd n: the ranks' shares of the samples differ
LAUNCH_TIMEOUT = 180  # a hard limit: a hang fails the test instead of stalling the suite


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    # the checkout first; a PYTHONPATH already set (packages installed to a folder) stays after it
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=path, **extra)
    return env


def _torchrun(args: list[str], *, script: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """``gankit train --no-progress ARGS`` in 2 processes; through ``script`` (a launcher file) if given."""
    entry = [str(script)] if script else ["-m", "gankit"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           *entry, "train", "--no-progress", *args]
    return subprocess.run(cmd, cwd=ROOT, env=_env(**env), capture_output=True, text=True, timeout=LAUNCH_TIMEOUT)


def _sets(extra: list[str] = ()) -> list[str]:
    return [a for s in [*OVERRIDES, *extra] for a in ("--set", s)]


def _cfg(steps: int = 4) -> C.Config:
    return C.build("seed002-mlp-mnist", overrides=[*OVERRIDES, f"train.steps={steps}"])


def _weights(run: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(str(run / "checkpoints" / f"step-{step:08d}" / "weights.safetensors"))


def _assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


def _only(run: Path, step: int) -> Path:
    """A copy of ``run`` cut back to its checkpoint at ``step`` (as if it had stopped there)."""
    out = run.parent / f"{run.name}-at-{step}"
    shutil.copytree(run, out)
    for ckpt in (out / "checkpoints").iterdir():
        if ckpt.is_dir() and ckpt.name != f"step-{step:08d}":
            shutil.rmtree(ckpt)
    (out / "checkpoints" / "latest").write_text(f"step-{step:08d}")
    return out


@pytest.fixture(scope="module", autouse=True)
def _module_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    # conftest's private cache, set before this module's shared runs (and inherited by the launched processes)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GANKIT_CACHE", str(tmp_path_factory.getbasetemp() / "gankit-cache"))
        yield


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference: one process, 4 steps on the global batch."""
    out = tmp_path_factory.mktemp("single") / "run"
    train(_cfg(), out, progress=False)
    return out


@pytest.fixture(scope="module")
def ddp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same run on 2 gloo processes under torchrun."""
    out = tmp_path_factory.mktemp("ddp") / "run"
    res = _torchrun(["-p", "seed002-mlp-mnist", "-o", str(out), *_sets()])
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("run: ") == 1  # only rank 0 reports
    return out


# ---- helpers in one process ------------------------------------------------------------------------------------

def test_single_process_helpers_are_the_identity() -> None:
    x = torch.arange(6)
    assert not dist.active() and dist.rank() == 0 and dist.world() == 1 and dist.is_main()
    assert dist.shard(x) is x and dist.gather_rows(x) is x
    assert dist.chunk(10) == (0, 10)
    assert dist.shared_generator(0) is None
    logs = {"a": torch.tensor(2.0)}
    assert dist.average_(logs) == {"a": torch.tensor(2.0)}
    assert dist.agree_stop("SIGINT") == "SIGINT"
    net = torch.nn.Linear(2, 1)
    assert dist.wrap(net, torch.device("cpu")) is net


def test_global_batch_must_split_evenly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dist, "world", lambda: 3)
    with pytest.raises(GankitError, match="data.batch_size = 8 does not split evenly over 3 processes"):
        dist.local_batch(8, "data.batch_size")
    assert dist.local_batch(9, "data.batch_size") == 3


def test_only_collective_failures_are_reported_as_lost_contact() -> None:
    def raised(fn: Callable[[], object]) -> RuntimeError:
        try:
            fn()
        except RuntimeError as exc:
            return exc
        raise AssertionError(f"{fn.__name__} did not raise")

    def bug() -> None:
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    def peer_died() -> None:
        raise RuntimeError("[gloo/transport/tcp/pair.cc:553] Connection closed by peer [127.0.0.1]:4992")

    def store_died() -> None:
        torch.distributed.TCPStore("127.0.0.1", _free_port(), 2, False, timeout=datetime.timedelta(seconds=0.2))

    assert not dist._from_collective(raised(bug))
    assert dist._from_collective(raised(peer_died))
    assert dist._from_collective(raised(store_died))


def _fake_group(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Makes :func:`dist.session` see a running group of 2 ranks; returns the list its teardown appends to."""
    torn: list[str] = []
    monkeypatch.setattr(dist, "_BROKEN", False)
    monkeypatch.setattr(dist, "active", lambda: True)
    monkeypatch.setattr(dist, "barrier", lambda: None)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "destroy_process_group", lambda: torn.append("destroyed"))
    return torn


def test_a_rank_that_fails_leaves_its_group_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tearing a group down after an error can hang (gloo's destructor waits for a thread that waits for the
    # GIL) and leave the other ranks waiting for the timeout: a failing rank is marked to leave with os._exit.
    torn = _fake_group(monkeypatch)
    with dist.session():
        pass
    assert torn == ["destroyed"] and not dist.broken()

    torn.clear()
    with pytest.raises(GankitError, match="bad input"), dist.session():
        raise GankitError("bad input")
    assert dist.broken() and torn == []


def test_a_failed_rank_exits_at_once_with_the_error_printed(monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from gankit import cli

    class Left(Exception):
        pass

    def leave(status: int) -> None:
        raise Left(status)

    _fake_group(monkeypatch)
    monkeypatch.setattr(os, "_exit", leave)

    @cli.main.command("fails-in-a-rank")
    def fails() -> None:
        with dist.session():
            raise GankitError("rank 1 read a bad file")

    @cli.main.command("bug-in-a-rank")
    def bug() -> None:
        with dist.session():
            raise ValueError("a bug")

    @cli.main.command("exits-in-a-rank")
    def exits() -> None:
        with dist.session():
            sys.exit(3)

    try:
        for command, status, said in (("fails-in-a-rank", 2, "error: rank 1 read a bad file"),
                                      ("bug-in-a-rank", 1, "ValueError: a bug"), ("exits-in-a-rank", 3, "")):
            monkeypatch.setattr(dist, "_BROKEN", False)
            with pytest.raises(Left) as left:
                cli.main([command], standalone_mode=False)
            assert left.value.args == (status,)
            assert said in capsys.readouterr().err
    finally:
        for command in ("fails-in-a-rank", "bug-in-a-rank", "exits-in-a-rank"):
            cli.main.commands.pop(command)


def test_a_rank_needs_a_gpu_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "2")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(GankitError, match="LOCAL_RANK is 2, but PyTorch sees 2 GPU"):
        dist.local_device(torch.device("cuda"))
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert dist.local_device(torch.device("cuda")) == torch.device("cuda", 1)
    assert dist.local_device("cpu") == torch.device("cpu")


def test_timeout_setting_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    for bad in ("soon", "-1", "0", "nan", "inf"):
        monkeypatch.setenv(dist.TIMEOUT_ENV, bad)
        with pytest.raises(GankitError, match="GANKIT_DIST_TIMEOUT must be a positive number of seconds"):
            dist.timeout()
    monkeypatch.setenv(dist.TIMEOUT_ENV, "42")
    assert dist.timeout().total_seconds() == 42


@pytest.mark.parametrize(("env", "message"), [
    ({"WORLD_SIZE": "abc"}, "WORLD_SIZE must be a whole number, got 'abc'"),
    ({"RANK": "abc"}, "RANK must be a whole number, got 'abc'"),
    ({"RANK": "5"}, "RANK is 5, but a job of WORLD_SIZE 2 has ranks 0 to 1"),
    ({"MASTER_PORT": "http"}, "MASTER_PORT must be a whole number"),
    # rank 1 never comes: the wait for it ends in a clear error, not torch's traceback
    ({"RANK": "0", dist.TIMEOUT_ENV: "1"}, "rank 0 of 2 could not join the job at 127.0.0.1:"),
])
def test_launcher_settings_are_checked(env: dict[str, str], message: str) -> None:
    base = {"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}
    cmd = [sys.executable, "-m", "gankit", "eval", "--real", "mnist-demo", "--metrics", "classes", "-n", "10"]
    res = subprocess.run(cmd, cwd=ROOT, env=_env(**{**base, **env}), capture_output=True, text=True,
                         timeout=LAUNCH_TIMEOUT)
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr, res.stderr[-2000:]


# ---- 2 processes ------------------------------------------------------------------------------------------------

def test_ddp_matches_one_process_on_the_global_batch(single: Path, ddp: Path) -> None:
    for step in (2, 4):
        _assert_same_weights(_weights(ddp, step), _weights(single, step))
    # logged values are the global batch's, and only rank 0 wrote them (one record per step)
    a, b = read_stats(RunDir(ddp)), read_stats(RunDir(single))
    logged = [r for r in a if "kimg" in r]
    assert [r["step"] for r in logged] == [1, 2, 3, 4]
    for ra, rb in zip(logged, [r for r in b if "kimg" in r], strict=True):
        assert ra["kimg"] == rb["kimg"] == ra["step"] * 8 / 1000
        for k in ("d_loss", "g_loss", "d_acc"):
            assert ra[k] == pytest.approx(rb[k], rel=1e-5, abs=1e-6)
    # the dFID measured during training, sampled and featurized in two halves, is the one-process value
    (ea,), (eb,) = ([r for r in recs if r.get("kind") == "eval"] for recs in (a, b))
    assert ea["dfid51-test"] == pytest.approx(eb["dfid51-test"], rel=1e-4)
    assert sorted(p.name for p in (ddp / "samples").iterdir()) == sorted(p.name for p in (single / "samples").iterdir())


def test_ddp_checkpoint_resumes_in_one_process(single: Path, ddp: Path) -> None:
    cut = _only(ddp, 2)
    result = train(_cfg(), cut, resume=True, progress=False)
    assert result.step == 4 and result.images_seen == 32
    _assert_same_weights(_weights(cut, 4), _weights(single, 4))


def test_one_process_checkpoint_resumes_on_two(single: Path) -> None:
    cut = _only(single, 2)
    res = _torchrun(["--resume", str(cut)])
    assert res.returncode == 0, res.stderr[-3000:]
    _assert_same_weights(_weights(cut, 4), _weights(single, 4))


def test_a_crashing_rank_ends_the_job_under_torchrun(tmp_path: Path) -> None:
    t0 = time.monotonic()
    res = _torchrun(["-p", "seed002-mlp-mnist", "-o", str(tmp_path / "run"), *_sets()], GANKIT_DIST_FAIL="1:2")
    assert res.returncode != 0
    assert "error: rank 1 fails at step 2" in res.stderr
    assert time.monotonic() - t0 < LAUNCH_TIMEOUT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_without_torchrun_the_surviving_rank_says_why_it_stops(tmp_path: Path) -> None:
    # Nodes started by hand (or a launcher that does not kill the others): rank 0 must not hang.
    port = str(_free_port())
    procs = []
    for r in (0, 1):
        env = _env(WORLD_SIZE="2", RANK=str(r), LOCAL_RANK=str(r), MASTER_ADDR="127.0.0.1", MASTER_PORT=port,
                   GANKIT_DIST_FAIL="1:2", GANKIT_DIST_TIMEOUT="60")
        cmd = [sys.executable, "-m", "gankit", "train", "--no-progress", "-p", "seed002-mlp-mnist",
               "-o", str(tmp_path / "run"), *_sets()]
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    try:
        outs = [p.communicate(timeout=LAUNCH_TIMEOUT) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert procs[1].returncode == 2 and "error: rank 1 fails at step 2" in outs[1][1]
    assert procs[0].returncode == 2, outs[0][1][-3000:]
    assert "error: rank 0 of 2: lost contact with the other ranks" in outs[0][1]
    assert "Traceback" not in outs[0][1]


def test_eval_on_two_processes_gives_the_one_process_metrics(single: Path, tmp_path: Path) -> None:
    from gankit.evaluate import evaluate_run

    run = tmp_path / "run"
    shutil.copytree(single, run)
    metrics = ("dfid", "kid", "classes")
    expected = evaluate_run(run, metrics=metrics, n=61, modes_n=0)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "gankit", "eval", str(run), "-n", "61", "--metrics", ",".join(metrics)]
    res = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=LAUNCH_TIMEOUT)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = res.stdout.splitlines()  # printed once, by rank 0: the table, then any note
    table = dict(line.split() for line in lines if not line.startswith("note: "))
    assert sum(line.startswith("note: ") for line in lines) <= 1
    for key in ("dfid61-test", "kid61-test", "is", "class_kl"):
        assert float(table[key]) == pytest.approx(expected[key], rel=1e-3, abs=1e-4), key


# Launcher for the test below: rank 1 fits different clusters (its centres in reverse order, its cluster
# sizes skewed), as a machine whose k-means float sums came out differently would.
_SKEWED_CLUSTERS = """
import os
import torch
import gankit.train.loop as loop
from gankit.cli import main

fit = loop.fit_clusters

def skewed(G, D, *args, **kwargs):
    labels = fit(G, D, *args, **kwargs)
    if os.environ["RANK"] != "0":
        D.centres.copy_(D.centres.flip(0))
        G.set_sizes(torch.arange(1, len(D.centres) + 1))
    return labels

loop.fit_clusters = skewed
main()
"""


def test_self_conditioned_ddp_matches_one_process(tmp_path: Path) -> None:
    """model.clusters under DDP: every rank takes rank 0's clusters, and the run is the one-process run,
    even where another rank's own k-means came out differently."""
    extra = ["model.clusters=3"]
    single = tmp_path / "single"
    train(C.build("seed002-mlp-mnist", overrides=[*OVERRIDES, *extra]), single, progress=False)
    launcher = tmp_path / "skewed_clusters.py"
    launcher.write_text(_SKEWED_CLUSTERS)
    res = _torchrun(["-p", "seed002-mlp-mnist", "-o", str(tmp_path / "ddp"), *_sets(extra)], script=launcher)
    assert res.returncode == 0, res.stderr[-3000:]
    a, b = _weights(tmp_path / "ddp", 4), _weights(single, 4)
    assert a["D.centres"].shape == (3, 28 * 28) and torch.equal(a["D.centres"], b["D.centres"])
    _assert_same_weights(a, b)


def test_ddp_resume_is_exact_with_dropout(tmp_path: Path) -> None:
    """Each rank's own random numbers (dropout in D) come from the step, so a run resumed under torchrun
    is the uninterrupted one (they came from a generator reseeded only at resume, and drifted 1e-3)."""
    extra = ["model.d.dropout=0.3", "train.steps=6"]
    straight = tmp_path / "run"
    res = _torchrun(["-p", "seed002-mlp-mnist", "-o", str(straight), *_sets(extra)])
    assert res.returncode == 0, res.stderr[-3000:]
    cut = _only(straight, 2)
    res = _torchrun(["--resume", str(cut)])
    assert res.returncode == 0, res.stderr[-3000:]
    for step in (4, 6):
        a, b = _weights(straight, step), _weights(cut, step)
        assert all(torch.equal(a[k], b[k]) for k in a), step


def test_ddp_trains_a_class_head_that_some_passes_leave_out(tmp_path: Path) -> None:
    """mnist-best's AC-GAN head: under d_update = separate D's fake pass does not read it, which DDP must be
    told (it stopped with an error that gankit then misreported as a lost rank)."""
    sets = ["data.dataset='mnist-demo'", "data.limit=256", "data.batch_size=16", "model.g.width=8",
            "model.d.width=8", "model.clusters=5", "loss.d_update='separate'", "train.steps=3",
            "train.checkpoint_every=3", "train.sample_every=3", "train.tensorboard=false"]
    res = _torchrun(["-p", "mnist-best", "-o", str(tmp_path / "run"), *[a for s in sets for a in ("--set", s)]])
    assert res.returncode == 0 and "lost contact" not in res.stderr, res.stderr[-3000:]
