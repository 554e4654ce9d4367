import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from gankit import config as C
from gankit.data import load_dataset, to_float
from gankit.errors import GankitError
from gankit.run import RunDir, latest_good_checkpoint, read_stats
from gankit.sample import generate, load_generator
from gankit.train.build import make_nets, sample_noise
from gankit.train.loop import train
from tests.conftest import SHARED
from tests.helpers import UNCLUSTERED, tiny_config


def _cfg(preset="seed002-mlp-mnist", extra=(), steps=6):
    return tiny_config(preset, SHARED, steps=steps, extra=list(extra))


def test_short_run_learns_the_data():
    """400 steps of seed 002's nets: G's images move from grey noise towards MNIST's statistics.

    The seed's SGD(0.01) needs thousands of steps to show it; Adam(2e-4) shows it in a test's time.
    """
    cfg = C.build("seed002-mlp-mnist", overrides=["data.dataset='mnist-demo'", "train.steps=400",
                                                  "train.sample_every=400", "train.checkpoint_every=400",
                                                  "optim.g.name='adam'", "optim.d.name='adam'", "optim.g.lr=2e-4",
                                                  "optim.d.lr=2e-4"])
    real = to_float(load_dataset("mnist-demo").images[:2000])  # [N, 1, 28, 28] in [-1, 1]
    real_mean, real_ink = real.mean(0), (real > 0).float().mean()

    def gap(G):
        G.eval()
        with torch.no_grad():
            fake = G(sample_noise(2000, cfg.model, device=torch.device("cpu")))
        return (fake.mean(0) - real_mean).norm().item(), abs((fake > 0).float().mean() - real_ink).item()

    G0, _ = make_nets(cfg, load_dataset("mnist-demo").info)
    before = gap(G0)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        result = train(cfg, f"{tmp}/run", progress=False)
        after = gap(load_generator(f"{tmp}/run").G)
        stats = read_stats(result.run, "train")
    assert after[0] < 0.5 * before[0], (before, after)  # the mean image approaches the real one
    assert after[1] < 0.5 * before[1], (before, after)  # so does the fraction of inked pixels
    first, last = stats[0], stats[-1]
    assert first["d_acc_fake"] > 0.5  # an untrained G is easy to spot ...
    assert last["d_acc_real"] < 0.99 and last["d_loss"] > 0.2  # ... a trained one is not


@pytest.mark.parametrize("preset", C.preset_names())
def test_every_preset_trains_and_checkpoints(preset, tmp_path):
    cfg = _cfg(preset)
    result = train(cfg, tmp_path / "run", progress=False)
    assert result.step == 6 and result.images_seen > 0
    run = result.run
    assert (run.path / "config.toml").exists()
    assert [r["step"] for r in read_stats(run, "train")] == [2, 4, 6]
    assert sorted(p.name for p in run.samples.iterdir()) == [f"step-{s:08d}.png" for s in (0, 3, 6)]
    assert C.load_file(run.config_path) == cfg
    lg = load_generator(run.path)
    images, _, _ = generate(lg, 5, seed=1)
    assert images.shape[0] == 5 and images.dtype == torch.uint8
    assert images.shape[1:] == (lg.info.channels, lg.info.resolution, lg.info.resolution)


def _weights(run_path):
    return load_file(str(latest_good_checkpoint(RunDir(run_path)) / "weights.safetensors"))


# every preset as `auto` resolves it on this machine, plus both memory layouts and precisions explicitly, so
# the layouts an AMX CPU or a GPU picks are covered on any CPU (bf16 emulated without bf16 units: slow but exact)
RESUME_CASES = [pytest.param(p, (), id=p) for p in C.preset_names()] + [
    pytest.param("mnist-best", (f"train.precision='{prec}'", f"train.channels_last={cl}"),
                 id=f"mnist-best-{prec}-{name}")
    for prec, cl, name in (("fp32", "true", "channels_last"), ("bf16", "true", "channels_last"),
                           ("bf16", "false", "contiguous"))
] + [pytest.param("mnist-best", ("train.reuse_fakes=true",), id="mnist-best-reuse-fakes"),
      # wide enough for G's 64 -> 32 and D's 64 -> 128 layers to take the patch-product weight gradient
      pytest.param("mnist-best", ("train.precision='bf16'", "train.channels_last=true", "model.g.width=32",
                                  "model.d.width=64"), id="mnist-best-bf16-patch-grad")]


# seed 004's full-width nets made it the slowest case (55 s for its 24 steps on an AVX2 CPU in fp32): stopped
# after step 2 of 4, which exercises the same resume (36 s)
RESUME_STEPS = {"seed004-dcgan-ships": 4}


@pytest.mark.parametrize(("preset", "layout"), RESUME_CASES)
def test_exact_resume(preset, layout, tmp_path):
    """Stop half-way (after step 4 of 8), resume: same weights and losses as never stopping (bit for bit)."""
    _check_exact_resume(preset, layout, tmp_path, steps=RESUME_STEPS.get(preset, 8))


def test_exact_resume_with_d_alone_channels_last(tmp_path, monkeypatch):
    """The layout ``auto`` picks for a small D on a CPU without bf16 units (D channels_last, G contiguous),
    on any machine: it resumes bit for bit too."""
    from gankit.train import speed

    monkeypatch.setattr(speed, "cpu_flags", lambda: frozenset({"avx2"}))
    _check_exact_resume("mnist-best", (), tmp_path)
    assert "channels_last D, contiguous G" in read_stats(RunDir(tmp_path / "b"), "setup")[-1]["fast_path"]


def _check_exact_resume(preset, layout, tmp_path, steps=8):
    cfg = _cfg(preset, extra=[f"train.checkpoint_every={steps // 2}", "train.log_every=2", *layout], steps=steps)
    straight = train(cfg, tmp_path / "a", progress=False)
    assert straight.step == steps
    # the interrupted run: train to the end, then lose everything after the half-way checkpoint
    train(cfg, tmp_path / "b", progress=False)
    run_b = RunDir(tmp_path / "b")
    shutil.rmtree(run_b.checkpoints / f"step-{steps:08d}")
    resumed = train(cfg, tmp_path / "b", resume=True, progress=False)
    assert resumed.step == steps
    wa, wb = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)

    def losses(path):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in read_stats(RunDir(path), "train")]

    assert losses(tmp_path / "a") == losses(tmp_path / "b")
    state = json.loads((latest_good_checkpoint(run_b) / "state.json").read_text())
    assert state["step"] == steps


def test_existing_run_is_never_overwritten(tmp_path):
    cfg = _cfg()
    train(cfg, tmp_path / "run", progress=False)
    before = (tmp_path / "run" / "stats.jsonl").read_text()
    with pytest.raises(GankitError, match="already holds a run.*--resume"):
        train(cfg, tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "stats.jsonl").read_text() == before
    train(cfg, tmp_path / "run", force=True, progress=False)  # explicit start-over


def test_damaged_latest_checkpoint_falls_back(tmp_path):
    cfg = _cfg(extra=["train.keep_checkpoints=5"])
    train(cfg, tmp_path / "run", progress=False)
    run = RunDir(tmp_path / "run")
    newest = run.checkpoints / "step-00000006"
    data = bytearray((newest / "weights.safetensors").read_bytes())
    data[-10] ^= 0xFF
    (newest / "weights.safetensors").write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="corrupted checkpoint .*using the previous good checkpoint step-00000003"):
        assert latest_good_checkpoint(run).name == "step-00000003"
    resumed = train(cfg, run.path, resume=True, progress=False)
    assert resumed.step == 6


def test_divergence_stops_with_clear_message(tmp_path):
    """A learning rate no rollback can save: 3 retries (halving it each time), then a clear stop."""
    cfg = _cfg(extra=["optim.d.lr=1e30", "optim.g.lr=1e30"])
    with pytest.raises(GankitError, match=r"diverged at step 2.*after 3 rollback\(s\).*0.125 x"), \
            pytest.warns(UserWarning, match="rolled back to step 0"):
        train(cfg, tmp_path / "run", progress=False)
    run = RunDir(tmp_path / "run")
    assert latest_good_checkpoint(run).name == "step-00000000"  # the untrained start, nothing non-finite
    assert read_stats(run, "train") == []  # nothing non-finite was recorded
    stats = read_stats(run, "rollback")
    assert len(stats) == 3 and [r["lr_scale"] for r in stats] == [0.5, 0.25, 0.125]


def test_divergence_without_retries_stops_at_once(tmp_path):
    cfg = _cfg(extra=["optim.d.lr=1e30", "optim.g.lr=1e30", "train.divergence_retries=0"])
    with pytest.raises(GankitError, match=r"diverged at step 2.*divergence_retries = 0"):
        train(cfg, tmp_path / "run", progress=False)
    assert read_stats(RunDir(tmp_path / "run"), "train") == []


def test_time_limit_stops_with_a_checkpoint(tmp_path):
    result = train(_cfg(extra=["train.time_limit=0.001"], steps=1000), tmp_path / "run", progress=False)
    assert 1 <= result.step < 1000
    assert latest_good_checkpoint(result.run).name == f"step-{result.step:08d}"


def test_weight_guard_stops_the_run(tmp_path):
    """Seed 003's guard: its preset sets divergence_retries = 0, so a weight past the limit stops the run."""
    assert C.build("seed003-cgan-mnist").train.divergence_retries == 0
    with pytest.raises(GankitError, match=r"training stopped at step 2: .*abort_weight_above"):
        train(_cfg(extra=["train.abort_weight_above=1e-3", "train.divergence_retries=0"]), tmp_path / "run",
              progress=False)


def test_schedules_change_who_trains(tmp_path):
    """seed 000's thresholds alternate G and D phases; seed 003's pause-the-winner reports its error."""
    res = train(_cfg("seed000-dcgan-letters", steps=8), tmp_path / "a", progress=False)
    phases = [r["phase"] for r in read_stats(res.run) if r.get("kind") == "schedule"]
    assert phases[:2] == ["g", "d"] and len(phases) >= 3
    res = train(_cfg("seed003-cgan-mnist", steps=8), tmp_path / "b", progress=False)
    recs = [r for r in read_stats(res.run) if r.get("kind") == "schedule"]
    assert [r["step"] for r in recs] == [2, 4, 6, 8]
    for r in recs:
        assert r["train_g"] == (r["error"] < 0.8) and r["train_d"] == (r["error"] > 0.3)


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_signal_saves_a_checkpoint_and_says_how_to_resume(sig, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "gankit", "train", "--preset", "seed002-mlp-mnist", "--set",
           "data.dataset=mnist-demo", "--steps", "1000000", "--out", str(out), "--no-progress", "--set",
           "train.log_every=5", "--set", "train.checkpoint_every=1000000"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.time() + 120
    while not (out / "stats.jsonl").exists() or not read_stats(RunDir(out), "train"):  # the first logged step
        assert time.time() < deadline and proc.poll() is None, "training did not start"
        time.sleep(0.2)
    proc.send_signal(getattr(signal, sig))
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + getattr(signal, sig), output
    assert f"stopped by {sig}" in output and f"gankit train --resume {out}" in output
    ckpt = latest_good_checkpoint(RunDir(out))
    step = int(ckpt.name.split("-")[1])
    assert 5 <= step < 1000000 and read_stats(RunDir(out), "train")[-1]["step"] == step  # nothing after it was lost
    cfg = C.load_file(out / "config.toml")
    cfg.train.steps = step + 3
    assert train(cfg, out, resume=True, progress=False).step == step + 3  # and it continues from there


def test_auxiliary_classifier_learns_the_classes(tmp_path):
    """AC-GAN: D's class head learns the real digits' classes, and G's loss carries the class term."""
    cfg = tiny_config("mnist-cond-best", SHARED, steps=120, extra=[
        "model.g.width=8", "model.d.width=8", "model.d.classifier=true", "data.batch_size=32",
        "train.g_batch_size=32", "data.limit=2000", "train.log_every=20", "optim.d.lr=1e-3"])
    stats = read_stats(train(cfg, tmp_path / "run", progress=False).run, "train")
    acc = [s["d_cls_acc"] for s in stats]  # each the mean over 20 steps; chance is 0.1
    assert acc[-1] > 0.7 and acc[-1] > acc[0] + 0.2, acc
    g_acc = [s["g_cls_acc"] for s in stats]  # D's head reads G's fakes as the asked-for class more often
    assert g_acc[-1] > g_acc[0] + 0.1, g_acc


def test_packed_discriminator_trains_and_resumes_exactly(tmp_path):
    """PacGAN (model.pack) with R1 and DiffAugment: D judges pairs, and a resumed run matches a straight one."""
    cfg = _cfg("mnist-best", extra=[*UNCLUSTERED, "model.pack=2", "model.g.width=8", "model.d.width=8",
                                    "loss.r1_gamma=1.0", "loss.r1_every=2", "train.augment='translation,cutout'",
                                    "train.checkpoint_every=4"], steps=8)
    straight = train(cfg, tmp_path / "a", progress=False)
    train(cfg, tmp_path / "b", progress=False)
    shutil.rmtree(RunDir(tmp_path / "b").checkpoints / "step-00000008")
    train(cfg, tmp_path / "b", resume=True, progress=False)
    wa, wb = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert any(k.startswith("D.net.") for k in wa)  # the packed D's weights are saved under its wrapper
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    stats = read_stats(straight.run, "train")
    assert all(torch.isfinite(torch.tensor(s["d_loss"])) for s in stats) and "r1" in stats[-1]


def test_packed_discriminator_with_a_concatenated_d_batch(tmp_path):
    """loss.d_update = concat (seeds 000 and 004) with model.pack: the joint batch's logits are split per
    group (splitting them per image ended in a ValueError)."""
    cfg = _cfg("mnist-best", extra=[*UNCLUSTERED, "model.pack=2", "model.g.width=8", "model.d.width=8",
                                    "loss.d_update='concat'"], steps=2)
    assert train(cfg, tmp_path / "run", progress=False).step == 2


@pytest.mark.parametrize("targets", ["loss.real_label=0.9", "loss.label_noise=0.05"])
def test_packed_discriminator_takes_smoothed_or_noisy_targets(targets, tmp_path):
    """One target per logit: a packed D gives one logit per group (targets for every image did not fit)."""
    cfg = _cfg("mnist-best", extra=[*UNCLUSTERED, "model.pack=2", "model.g.width=8", "model.d.width=8",
                                    "loss.name='bce'", targets], steps=2)
    assert train(cfg, tmp_path / "run", progress=False).step == 2


def test_learning_rate_changed_at_resume_takes_effect(tmp_path):
    """`gankit train --resume RUN --set optim.g.lr=...` (fine-tuning at a lower rate) must not be undone by
    the learning rate stored in the optimizer's saved state."""
    cfg = _cfg("mnist-best", extra=["model.g.width=8", "model.d.width=8", "train.log_every=2"], steps=4)
    train(cfg, tmp_path / "run", progress=False)
    cfg.train.steps, cfg.optim.g.lr, cfg.optim.d.lr = 8, 2e-4, 3e-4
    train(cfg, tmp_path / "run", resume=True, progress=False)
    stats = read_stats(RunDir(tmp_path / "run"), "train")
    assert [(s["step"], s["lr_g"], s["lr_d"]) for s in stats] == [
        (2, 1e-3, 1e-3), (4, 1e-3, 1e-3), (6, 2e-4, 3e-4), (8, 2e-4, 3e-4)]


def test_the_linear_ramp_down_follows_the_runs_steps(tmp_path):
    """Seed 002 updates D on the real batch and then on the fake one: counting D's updates, its rate fell
    twice as fast as G's, and a ramp set on --resume to start at the step the run stopped at (as the README
    says it may) jumped to its end at once. SNGAN's ramp, too, follows the iterations of the run."""
    ramp = ["optim.g.linear_decay=[0, 8]", "optim.d.linear_decay=[0, 8]", "train.log_every=2"]
    cfg = _cfg(extra=ramp, steps=4)  # seed 002: loss.d_update = separate, plain SGD at 0.01
    train(cfg, tmp_path / "run", progress=False)
    stats = read_stats(RunDir(tmp_path / "run"), "train")
    assert [s["step"] for s in stats] == [2, 4]
    assert [v for s in stats for v in (s["lr_g"], s["lr_d"])] == pytest.approx(
        [0.0075, 0.0075, 0.005, 0.005])  # the next step's rate: 1 - step / 8 of 0.01
    later = _cfg(extra=[*ramp[2:], "optim.d.linear_decay=[4, 8]"], steps=6)
    train(later, tmp_path / "run", resume=True, progress=False)
    lr_d = {s["step"]: s["lr_d"] for s in read_stats(RunDir(tmp_path / "run"), "train")}
    assert lr_d[6] == pytest.approx(0.005)  # half-way down a ramp from step 4 to 8 (it read 0.0)


def test_image_range_scales_the_real_batches(tmp_path, monkeypatch):
    """model.image_range reaches the loop: every real batch D sees is scaled to it (seed 004's [0, 1])."""
    import gankit.train.loop as loop

    seen = []

    def recording(batch, *, value_range):
        out = to_float(batch, value_range=value_range)
        seen.append((value_range, float(out.min()), float(out.max())))
        return out

    monkeypatch.setattr(loop, "to_float", recording)
    train(_cfg(extra=["model.image_range=[0, 1]"], steps=2), tmp_path / "run", progress=False)
    assert seen and all(vr == (0.0, 1.0) and lo >= 0.0 and hi <= 1.0 for vr, lo, hi in seen)



def test_gs_step_computes_no_gradient_for_d(tmp_path, monkeypatch):
    """D's weights are frozen during G's step (no gradients computed and thrown away) and unfrozen for
    D's next step: each D parameter receives exactly one gradient per D step."""
    import gankit.train.loop as loop

    grads: dict[str, int] = {}
    nets = {}

    def make_and_count(cfg, info):
        G, D = make_nets(cfg, info)
        for name, p in D.named_parameters():
            p.register_hook(lambda g, name=name: grads.__setitem__(name, grads.get(name, 0) + 1))
        nets["D"] = D
        return G, D

    monkeypatch.setattr(loop, "make_nets", make_and_count)
    train(_cfg("mnist-best", steps=3), tmp_path / "run", progress=False)
    names = [n for n, _ in nets["D"].named_parameters()]
    assert grads == dict.fromkeys(names, 3)  # three steps, one D backward each (joint update), none in G's
    assert all(p.requires_grad for p in nets["D"].parameters())


def _g_forwards(monkeypatch, cfg, path):
    """Training-mode forward passes of G during a run: (with autograd recording, without)."""
    import gankit.train.loop as loop

    calls = {True: 0, False: 0}

    def make_and_count(cfg, info):
        G, D = make_nets(cfg, info)
        G.register_forward_pre_hook(lambda m, _: calls.__setitem__(torch.is_grad_enabled(),
                                                                    calls[torch.is_grad_enabled()] + m.training))
        return G, D

    monkeypatch.setattr(loop, "make_nets", make_and_count)
    result = train(cfg, path, progress=False)
    return calls[True], calls[False], result


def test_reuse_fakes_runs_g_once_a_step(tmp_path, monkeypatch):
    """train.reuse_fakes: G's update takes D's fakes (made with G's graph kept) instead of running G
    again, so a step has one forward pass of G where it had two (one without autograd, for D)."""
    extra = ["train.sample_every=100", "train.checkpoint_every=100"]
    assert _g_forwards(monkeypatch, _cfg("mnist-best", extra, steps=3), tmp_path / "a")[:2] == (3, 3)
    grad, nograd, result = _g_forwards(monkeypatch, _cfg("mnist-best", [*extra, "train.reuse_fakes=true"], steps=3),
                                       tmp_path / "b")
    assert (grad, nograd) == (3, 0)
    stats = read_stats(result.run, "train")
    assert stats and all(torch.isfinite(torch.tensor(r["g_loss"])) for r in stats)
    # n-critic: only the last of D's updates keeps G's graph
    grad, nograd, _ = _g_forwards(monkeypatch, _cfg("mnist-best", [*extra, "train.reuse_fakes=true",
                                                                   "schedule.d_steps=3"], steps=2), tmp_path / "c")
    assert (grad, nograd) == (2, 4)


def test_joint_update_in_one_pass_equals_two_passes(tmp_path, monkeypatch):
    """D's joint update runs real and fake images through D in one pass when D has no batch norm: the
    same losses as two passes (fp32, no spectral norm, whose power iteration would run once instead of
    twice). A D with batch norm keeps two passes."""
    import gankit.train.loop as loop
    from gankit.train.speed import batch_independent

    extra = ["model.d.sn=false", "train.precision='fp32'", "train.log_every=1", "train.sample_every=100"]
    cfg = _cfg("mnist-best", extra, steps=3)
    batches: list[int] = []  # the batch sizes D sees in training mode

    def make_and_watch(cfg, info):
        G, D = make_nets(cfg, info)
        D.register_forward_pre_hook(lambda m, args: batches.append(args[0].shape[0]) if m.training else None)
        return G, D

    monkeypatch.setattr(loop, "make_nets", make_and_watch)
    one = train(cfg, tmp_path / "one", progress=False)
    bs = cfg.data.batch_size
    assert batches == [2 * bs, bs] * 3  # per step: D's update on real + fake at once, then D inside G's update
    batches.clear()
    monkeypatch.setattr(loop, "batch_independent", lambda net: False)
    two = train(cfg, tmp_path / "two", progress=False)
    assert batches == [bs, bs, bs] * 3
    a, b = read_stats(one.run, "train"), read_stats(two.run, "train")
    for key in ("d_loss_real", "d_loss_fake", "g_loss", "d_cls"):
        assert [r[key] for r in a] == pytest.approx([r[key] for r in b], rel=1e-4), key
    from gankit.nets import build_nets

    def D_of(preset, *overrides):
        return build_nets(C.build(preset, overrides=list(overrides)).model, image_shape=(1, 28, 28), num_classes=10)[1]

    assert batch_independent(D_of("mnist-best")) and batch_independent(D_of("seed003-cgan-mnist"))
    assert not batch_independent(D_of("mnist-best", "model.d.bn=true"))  # batch norm in D


@pytest.mark.parametrize("g_labels", ["batch", "random"])
def test_g_labels_batch_feeds_gs_update_the_real_batchs_classes(g_labels, tmp_path):
    """Seed 003 feeds y: batch[1] to G's step too; the default draws G's classes at random."""
    from gankit.train import loop

    seen: list[tuple[bool, torch.Tensor]] = []  # (grad enabled: G's own update, labels)
    real_init = loop.make_nets

    def recording(cfg, info):
        G, D = real_init(cfg, info)
        G.register_forward_pre_hook(lambda m, args: seen.append((torch.is_grad_enabled(), args[1].clone())))
        return G, D

    cfg = _cfg("seed003-cgan-mnist", extra=[f"train.g_labels='{g_labels}'"], steps=3)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(loop, "make_nets", recording)
        train(cfg, tmp_path / "run", progress=False)
    batch = [(grad, y) for grad, y in seen if len(y) == cfg.data.batch_size]  # not the sample grid or probes
    # each step runs G's update (grad on) next to D's update, whose fakes take the real batch's classes
    same = [any(torch.equal(y, batch[j][1]) for j in (i - 1, i + 1) if 0 <= j < len(batch) and not batch[j][0])
            for i, (grad, y) in enumerate(batch) if grad]
    assert len(same) >= 2  # (pause-the-winner may pause G in a step)
    assert all(same) if g_labels == "batch" else not any(same)


def test_a_conditional_model_on_a_class_filter_is_asked_only_for_its_classes(tmp_path, monkeypatch):
    """mnist:3,5 keeps MNIST's ten-class list: G used to be asked for all ten in its update, eight of them
    classes D never sees a real image of; now for 3 and 5 only, in training, the grid, sampling and eval."""
    import gankit.train.loop as loop

    asked: list[int] = []

    def nets(cfg, info):
        G, D = make_nets(cfg, info)
        G.register_forward_pre_hook(lambda _m, args: asked.extend(args[1].tolist()) if len(args) > 1 else None)
        return G, D

    monkeypatch.setattr(loop, "make_nets", nets)
    cfg = _cfg("mnist-cond-best", extra=["data.dataset='mnist-demo:3,5'", "train.sample_grid=8"])
    run = RunDir(tmp_path / "run")
    train(cfg, run.path, progress=False)
    assert asked and set(asked) == {3, 5}, sorted(set(asked))
    lg = load_generator(run.path)
    assert lg.classes == (3, 5) and lg.info.num_classes == 10
    _, labels, _ = generate(lg, 16, seed=0)
    assert set(labels.tolist()) == {3, 5}
    from gankit.sample import class_indices
    from gankit.viz.interpolate import digit_classes

    with pytest.warns(UserWarning, match="class 7 was not among this run's training images .*3, 5"):
        assert class_indices(["7", "3"], lg.info, lg.classes) == [7, 3]
    with pytest.raises(GankitError, match=r"trained on the digits 0-9; .* held no 0, 1, 2, 4, 6, 7, 8, 9"):
        digit_classes(lg)
    assert C.build("mnist-cond-best").data.dataset == "mnist"  # (the whole dataset: every class, as before)
