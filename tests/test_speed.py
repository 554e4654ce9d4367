"""The fast path's switches: how auto resolves, and that every switch trains the same nets correctly."""

import os

import pytest
import torch

from gankit import config as C
from gankit.errors import GankitError
from gankit.run import RunDir, read_stats
from gankit.train import speed
from gankit.train.loop import train
from tests.conftest import SHARED
from tests.helpers import tiny_config

CPU = torch.device("cpu")


@pytest.mark.parametrize(("flags", "want"), [(frozenset({"avx2"}), torch.float32),
                                             (frozenset({"avx512f"}), torch.float32),
                                             (frozenset({"avx512f", "amx_bf16", "amx_tile"}), torch.bfloat16),
                                             # AMD Zen 5 (session 26): 1.3-2.3x for the convolutional presets
                                             (frozenset({"avx512f", "avx512_bf16"}), torch.bfloat16)])
def test_auto_precision_follows_the_cpus_bf16_units(monkeypatch, flags, want):
    monkeypatch.setattr(speed, "cpu_flags", lambda: flags)
    assert speed.resolve_precision("auto", CPU) == want
    fp = speed.fast_path(precision="auto", channels_last=None, compile="off", device=CPU)
    assert fp.channels_last == (want == torch.bfloat16)  # channels_last only pays with bf16 on a CPU
    assert speed.resolve_precision("fp32", CPU) == torch.float32  # explicit choices win
    assert speed.resolve_precision("bf16", CPU) == torch.bfloat16


def test_auto_precision_on_an_amx_cpu_takes_bf16_for_convolutional_nets_only(monkeypatch):
    """Measured on an AMX CPU: bf16 sped up every convolutional preset but slowed the MLP GAN; on an
    AVX512_BF16 CPU without AMX (Zen 5) it sped up the MLP too."""
    monkeypatch.setattr(speed, "cpu_flags", lambda: frozenset({"amx_bf16"}))
    mlp = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LeakyReLU(), torch.nn.Linear(8, 1))
    conv = torch.nn.Sequential(torch.nn.ConvTranspose2d(4, 2, 4), torch.nn.Tanh())
    assert speed.fast_path(precision="auto", channels_last=None, compile="off", device=CPU,
                           nets=(mlp,)).dtype == torch.float32
    fp = speed.fast_path(precision="auto", channels_last=None, compile="off", device=CPU, nets=(mlp, conv))
    assert fp.dtype == torch.bfloat16 and fp.channels_last
    assert speed.fast_path(precision="bf16", channels_last=None, compile="off", device=CPU,
                           nets=(mlp,)).dtype == torch.bfloat16  # an explicit choice still wins
    monkeypatch.setattr(speed, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    assert speed.fast_path(precision="auto", channels_last=None, compile="off", device=CPU,
                           nets=(mlp,)).dtype == torch.bfloat16
    monkeypatch.setattr(speed, "cpu_flags", lambda: frozenset({"avx2"}))
    assert speed.fast_path(precision="auto", channels_last=None, compile="off", device=CPU,
                           nets=(mlp, conv)).dtype == torch.float32
    assert speed.has_convolutions(torch.nn.Conv1d(1, 1, 1)) and not speed.has_convolutions(mlp)


def test_bad_switches_are_clear_errors():
    with pytest.raises(GankitError, match="train.precision = 'fp16'"):
        speed.fast_path(precision="fp16", channels_last=None, compile="off", device=CPU)
    with pytest.raises(GankitError, match="train.compile"):
        C.build("seed002-mlp-mnist", overrides=["train.compile='fast'"])
    with pytest.raises(GankitError, match="need train.compile = 'off'"):  # no double backward when compiled
        C.build("mnist-best", overrides=["train.compile='default'", "loss.r1_gamma=1.0"])


def _dcgan_d(width: int) -> torch.nn.Module:
    from gankit.nets.dcgan import DCGANDiscriminator

    return DCGANDiscriminator(image_shape=(1, 28, 28), width=width, sn=True)


def test_auto_lays_a_small_discriminator_alone_out_channels_last_on_cpus_without_bf16(monkeypatch):
    """Measured on an AVX2 CPU in fp32: a channels_last D with at most 64 channels (the width-32 presets)
    trained 1.03-1.13x faster, wider ones did not gain, and G's transposed convolutions did not either."""
    mlp = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LeakyReLU(), torch.nn.Linear(8, 1))
    G = torch.nn.Sequential(torch.nn.ConvTranspose2d(4, 2, 4), torch.nn.Tanh())

    def resolve(D, channels_last=None, precision="auto", device=CPU):
        return speed.fast_path(precision=precision, channels_last=channels_last, compile="off", device=device,
                               nets=(G, D), d=D)

    monkeypatch.setattr(speed, "cpu_flags", lambda: frozenset({"avx2"}))
    small, wide = _dcgan_d(32), _dcgan_d(64)  # widest convolutions: 64 and 128 channels
    fp = resolve(small)
    assert fp.dtype == torch.float32 and not fp.channels_last and fp.d_channels_last
    assert fp.describe().startswith("fp32, channels_last D, contiguous G")
    assert not resolve(wide).d_channels_last
    assert not resolve(mlp).d_channels_last  # no convolutions
    assert not resolve(small, channels_last=False).d_channels_last  # an explicit choice wins, for both nets
    both = resolve(small, channels_last=True)
    assert both.channels_last and not both.d_channels_last and "channels_last D" not in both.describe()
    assert not resolve(small, precision="bf16").d_channels_last  # bf16 lays out both nets
    assert not speed.fast_path(precision="auto", channels_last=None, compile="off", device=CPU,
                               nets=(G, small)).d_channels_last  # only for a net named as D
    monkeypatch.setattr(speed, "cpu_flags", lambda: frozenset({"amx_bf16"}))
    fp = resolve(small)
    assert fp.dtype == torch.bfloat16 and fp.channels_last and not fp.d_channels_last


def test_d_alone_channels_last_prepares_d_and_real_batches_only():
    fp = speed.FastPath(device=CPU, d_channels_last=True)
    g = fp.prepare(torch.nn.ConvTranspose2d(4, 3, 4))
    d = fp.prepare(torch.nn.Conv2d(3, 4, 3), d=True)
    assert g.weight.is_contiguous() and not g.weight.is_contiguous(memory_format=torch.channels_last)
    assert d.weight.is_contiguous(memory_format=torch.channels_last) and not d.weight.is_contiguous()
    assert fp.images(torch.randn(2, 3, 8, 8)).is_contiguous(memory_format=torch.channels_last)


def test_d_alone_channels_last_trains_the_same_nets(tmp_path, monkeypatch):
    """The run ``auto`` gives mnist-best on an AVX2 CPU: D's weights and real batches channels_last, G's
    contiguous, and the same losses as a run with both nets contiguous (float summation order only)."""
    from gankit.train import loop

    monkeypatch.setattr(speed, "cpu_flags", lambda: frozenset({"avx2"}))
    seen = {}
    wrap = loop.dist.wrap

    def spy(net, *args, **kwargs):  # the nets as the loop hands them to DDP: after the fast path's prepare
        seen[type(net).__name__] = [(p.is_contiguous(), p.is_contiguous(memory_format=torch.channels_last))
                                    for p in net.parameters() if p.dim() == 4]
        return wrap(net, *args, **kwargs)

    monkeypatch.setattr(loop.dist, "wrap", spy)
    base = ["train.steps=3", "train.log_every=1"]
    auto = train(tiny_config("mnist-best", SHARED, extra=base), tmp_path / "auto", progress=False)
    assert "channels_last D, contiguous G" in read_stats(auto.run, "setup")[0]["fast_path"]
    assert seen["ClusterGenerator"] and all(plain for plain, _ in seen["ClusterGenerator"])
    d = seen["ClusterDiscriminator"]  # (a 1-channel layer's weight counts as both layouts)
    assert d and all(cl for _, cl in d) and not all(plain for plain, _ in d)
    train(tiny_config("mnist-best", SHARED, extra=[*base, "train.channels_last=false"]), tmp_path / "plain",
          progress=False)
    a, b = _losses(tmp_path / "auto"), _losses(tmp_path / "plain")
    assert len(a) == len(b) == 3
    assert torch.allclose(torch.tensor(a), torch.tensor(b), rtol=1e-4)


def test_autocast_is_bf16_only_when_asked():
    x, w = torch.randn(4, 8), torch.randn(8, 3)
    with speed.FastPath(device=CPU, dtype=torch.bfloat16).autocast():
        assert (x @ w).dtype == torch.bfloat16
    with speed.FastPath(device=CPU).autocast():
        assert (x @ w).dtype == torch.float32


def test_channels_last_prepares_nets_and_batches():
    fp = speed.FastPath(device=CPU, channels_last=True)
    net = fp.prepare(torch.nn.Conv2d(3, 4, 3))
    assert net.weight.is_contiguous(memory_format=torch.channels_last)
    x = fp.images(torch.randn(2, 3, 8, 8))
    assert x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    assert fp.images(torch.randn(2, 5)).shape == (2, 5)  # flat batches pass through


def _losses(path):
    return [r["d_loss"] for r in read_stats(RunDir(path), "train")]


def test_bf16_and_channels_last_runs_train_the_same_nets(tmp_path):
    """A DCGAN preset under bf16 autocast + channels_last: weights stay fp32, the run records its fast
    path, and its losses track the fp32 run's (bf16 rounding only) from the same start."""
    # two steps: seed 001's nets are full width, and bf16 is emulated (slow) on CPUs without bf16 units
    base = ["train.steps=2", "train.log_every=1", "data.batch_size=8", "train.g_batch_size=8"]
    ref = train(tiny_config("seed001-dcgan-mnist", SHARED, extra=[*base, "train.precision='fp32'",
                                                                   "train.channels_last=false"]),
                tmp_path / "fp32", progress=False)
    fast = train(tiny_config("seed001-dcgan-mnist", SHARED, extra=[*base, "train.precision='bf16'",
                                                                    "train.channels_last=true"]),
                 tmp_path / "bf16", progress=False)
    setup = read_stats(fast.run, "setup")[0]
    assert "bf16 autocast" in setup["fast_path"] and "channels_last" in setup["fast_path"]
    assert "fp32" in read_stats(ref.run, "setup")[0]["fast_path"]
    a, b = _losses(tmp_path / "fp32"), _losses(tmp_path / "bf16")
    assert len(a) == len(b) == 2 and all(torch.isfinite(torch.tensor(b)))
    assert abs(a[0] - b[0]) < 0.05 * abs(a[0])  # the first step: same data and weights, bf16 rounding
    from safetensors.torch import load_file

    weights = load_file(fast.run.checkpoints / "step-00000002" / "weights.safetensors")
    assert all(v.dtype in (torch.float32, torch.int64) for v in weights.values())  # master weights stay fp32


@pytest.mark.parametrize("preset, sets", [
    ("seed002-mlp-mnist", ["train.precision='fp32'", "train.channels_last=false"]),  # (auto: bf16 on Zen 5)
    # channels_last: D's Flatten runs outside the compiled graph on a CPU (a graph break)
    ("mnist-best", ["train.channels_last=true"]),
])
def test_compiled_run_trains_the_same_nets(tmp_path, monkeypatch, preset, sets):
    """train.compile wires compiled forwards into the loop: the losses equal the eager run's.

    The aot_eager backend traces and runs the same graph as inductor would compile, without needing a
    C++ compiler in the test environment (the inductor speed is measured in benchmarks/compile_warmup.py).
    """
    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, mode=None, dynamic=None: real_compile(
        fn, backend="aot_eager", dynamic=dynamic))
    torch._dynamo.reset()  # nets of earlier tests must not count toward dynamo's recompile limit
    base = ["train.steps=3", "train.log_every=1", *sets]
    train(tiny_config(preset, SHARED, extra=base), tmp_path / "eager", progress=False)
    fast = train(tiny_config(preset, SHARED, extra=[*base, "train.compile='default'"]),
                 tmp_path / "compiled", progress=False)
    setup = read_stats(fast.run, "setup")[0]["fast_path"]
    assert "torch.compile(default)" in setup and ("channels_last" in setup) == ("train.channels_last=true" in sets)
    a, b = _losses(tmp_path / "eager"), _losses(tmp_path / "compiled")
    assert len(a) == len(b) == 3
    assert torch.allclose(torch.tensor(a), torch.tensor(b), rtol=1e-4)


def test_deterministic_kernels_apply_while_training_and_are_restored(tmp_path, monkeypatch):
    """train.deterministic turns PyTorch's deterministic mode on for the run alone; an op without a
    deterministic kernel is named in a GankitError (on a GPU, where such ops exist)."""
    from gankit.train import loop

    assert not torch.are_deterministic_algorithms_enabled()
    seen = []
    make_nets = loop.make_nets

    def spy(*args, **kwargs):  # inside the run: what mode its nets are built and trained under
        seen.append((torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic,
                     "CUBLAS_WORKSPACE_CONFIG" in os.environ))
        return make_nets(*args, **kwargs)

    monkeypatch.setattr(loop, "make_nets", spy)
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    for on in (True, False):
        cfg = tiny_config("mnist-best", SHARED, extra=[f"train.deterministic={str(on).lower()}"])
        assert train(cfg, tmp_path / f"run-{on}", progress=False).step == 6
    assert seen == [(True, True), (False, False)]
    assert not torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.deterministic
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ  # set for the run, unset after it
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")  # the user's own setting is kept
    with speed.deterministic_kernels(True):
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
    with pytest.raises(GankitError, match="train.deterministic = true, but an op has no deterministic kernel.*"
                                          "kthvalue_cuda"):
        with speed.deterministic_kernels(True):
            raise RuntimeError("kthvalue_cuda does not have a deterministic implementation, but you set "
                               "'torch.use_deterministic_algorithms(True)'")
    assert not torch.are_deterministic_algorithms_enabled()


def test_sampling_lays_convolutional_generators_out_channels_last_on_cpus_without_bf16(monkeypatch):
    """Transposed-convolution generators sampled 1.0-1.5x faster channels_last in fp32 on an AVX2 CPU;
    training did not gain, nor did a generator of plain 5x5 convolutions (seed 004: 0.88x)."""
    mlp = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LeakyReLU(), torch.nn.Linear(8, 1))
    conv = torch.nn.Sequential(torch.nn.ConvTranspose2d(4, 2, 4), torch.nn.Tanh())
    monkeypatch.setattr(speed, "cpu_flags", lambda: frozenset({"avx2"}))
    assert speed.inference_channels_last(conv, CPU, torch.float32)
    assert not speed.inference_channels_last(mlp, CPU, torch.float32)
    plain = torch.nn.Sequential(torch.nn.ConvTranspose2d(4, 2, 4), torch.nn.Conv2d(2, 2, 5))  # seed 004's kind
    assert not speed.inference_channels_last(plain, CPU, torch.float32)
    assert not speed.inference_channels_last(conv, torch.device("cuda"), torch.float32)  # (not measured there)
    monkeypatch.setattr(speed, "cpu_flags", lambda: frozenset({"amx_bf16"}))  # not measured there either
    assert not speed.inference_channels_last(conv, CPU, torch.float32)
    # in bf16 every convolutional generator (Zen 5, session 26: 1.21-2.8x over contiguous bf16)
    monkeypatch.setattr(speed, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    assert speed.inference_channels_last(conv, CPU, torch.bfloat16)
    assert speed.inference_channels_last(plain, CPU, torch.bfloat16)
    assert not speed.inference_channels_last(mlp, CPU, torch.bfloat16)
    assert not speed.inference_channels_last(conv, torch.device("cuda"), torch.bfloat16)


def tiny_loaded_generator(preset: str):
    """A freshly initialised generator of ``preset``'s tiny test config (MNIST-shaped), as sampling loads one."""
    from gankit.data import DatasetInfo
    from gankit.nets import build_nets
    from gankit.sample import LoadedGenerator

    cfg = tiny_config(preset, SHARED, steps=1)
    info = DatasetInfo(name="mnist", resolution=28, channels=1, class_names=tuple(str(i) for i in range(10)))
    torch.manual_seed(0)
    G, _ = build_nets(cfg.model, image_shape=(1, 28, 28), num_classes=10)
    return LoadedGenerator(G=G.eval(), cfg=cfg, info=info, step=0, device=CPU)


def test_sampling_through_a_channels_last_copy_gives_the_same_images(monkeypatch):
    from gankit.data import to_uint8
    from gankit.sample import generate

    monkeypatch.setattr(speed, "cpu_flags", lambda: frozenset({"avx2"}))  # fp32 and channels_last on any CPU
    lg = tiny_loaded_generator("mnist-cond-best")
    G = lg.G
    prepared = []
    prepare = speed.FastPath.prepare

    def spy(fp, net):
        prepared.append(fp.channels_last)
        return prepare(fp, net)

    monkeypatch.setattr(speed.FastPath, "prepare", spy)
    images, labels, z = generate(lg, 24, seed=5, batch=10)
    assert prepared == [True]  # sampled through a channels_last copy
    assert all(p.is_contiguous() for p in G.parameters())  # the loaded generator is left as it was
    with torch.inference_mode():
        want = to_uint8(G(z, labels), value_range=(-1.0, 1.0))
    diff = (images.int() - want.int()).abs()
    assert diff.max() <= 1 and (diff > 0).float().mean() < 0.01  # the kernels' summation order only


def test_activation_bytes_counts_each_layer_output_once():
    torch.manual_seed(0)
    x = torch.randn(2, 4)
    inplace = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(inplace=True), torch.nn.Linear(8, 3))
    assert speed.activation_bytes(inplace, x) == (2 * 8 + 2 * 3) * 4  # the in-place ReLU writes the Linear's
    apart = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8, 3))
    assert speed.activation_bytes(apart, x) == (2 * 8 + 2 * 8 + 2 * 3) * 4  # Flatten's view: no new storage
    assert not apart[0]._forward_hooks  # the counting hooks are removed


def test_inference_batch_keeps_a_cpu_batchs_layer_outputs_near_the_budget(monkeypatch):
    net = torch.nn.Sequential(torch.nn.Linear(4, 1000), torch.nn.ReLU())  # 8,000 bytes of outputs per item
    x = torch.randn(2, 4)
    lo, hi = speed.INFERENCE_BATCH_RANGE
    monkeypatch.setattr(speed, "CPU_INFERENCE_BYTES", 8000 * 300)
    assert speed.inference_batch(net, (x,), CPU) == 300
    monkeypatch.setattr(speed, "CPU_INFERENCE_BYTES", 8000 * 10**6)
    assert speed.inference_batch(net, (x,), CPU) == hi
    monkeypatch.setattr(speed, "CPU_INFERENCE_BYTES", 8000)
    assert speed.inference_batch(net, (x,), CPU) == lo
    # a GPU takes the largest batch without a trial pass (the net here is on the CPU: it would fail on one)
    assert speed.inference_batch(net, (x.to("meta"),), torch.device("cuda")) == hi


def test_sampling_and_scoring_in_chosen_batches_give_the_images_and_features_of_one_batch(monkeypatch):
    from gankit.data import to_float
    from gankit.metrics.evaluator import Evaluator, EvaluatorNet
    from gankit.sample import generate

    lg = tiny_loaded_generator("seed003-cgan-mnist")
    G, cfg = lg.G, lg.cfg
    chosen = []
    choose = speed.inference_batch
    z2, y2 = torch.randn(2, cfg.model.latent_dim), torch.tensor([3, 7])
    # about 4 images a batch (sampling runs a channels_last copy of G, whose outputs may differ a little)
    monkeypatch.setattr(speed, "CPU_INFERENCE_BYTES", speed.activation_bytes(G, z2, y2) * 2)
    monkeypatch.setattr(speed, "INFERENCE_BATCH_RANGE", (1, 1000))

    def spy(net, inputs, device):
        chosen.append(choose(net, inputs, device))
        return chosen[-1]

    import gankit.metrics.evaluator as evaluator_module
    import gankit.sample as sample_module
    monkeypatch.setattr(sample_module, "inference_batch", spy)
    monkeypatch.setattr(evaluator_module, "inference_batch", spy)
    passes = []  # the batches each one ran: generate quantises, the evaluator runs forward, once a batch
    quantise, score = sample_module.to_uint8, evaluator_module.forward
    monkeypatch.setattr(sample_module, "to_uint8", lambda x, **kw: passes.append(len(x)) or quantise(x, **kw))
    monkeypatch.setattr(evaluator_module, "forward", lambda net, x, **kw: passes.append(len(x)) or score(net, x, **kw))
    images, labels, z = generate(lg, 10, seed=5)
    assert 2 <= chosen[0] <= 5  # so the 10 images came in several batches, of the size chosen
    assert passes == [chosen[0]] * (10 // chosen[0]) + ([10 % chosen[0]] if 10 % chosen[0] else [])
    whole, whole_labels, whole_z = generate(lg, 10, seed=5, batch=10)
    assert torch.equal(labels, whole_labels) and torch.equal(z, whole_z)
    diff = (images.int() - whole.int()).abs()
    assert diff.max() <= 1 and (diff > 0).float().mean() < 0.01  # the kernels' summation order only

    ev = Evaluator(name="mnist", net=EvaluatorNet(channels=1, num_classes=10, width=4).eval(), meta={}, sha256="")
    example = to_float(images[:2]).contiguous(memory_format=torch.channels_last)  # as the evaluator runs them
    monkeypatch.setattr(speed, "CPU_INFERENCE_BYTES", speed.activation_bytes(ev.fast, example) * 2)
    passes.clear()
    feats, probs = ev(images)
    assert chosen[1] == 4 and passes == [4, 4, 2]
    feats_whole, probs_whole = ev(images, batch=10)
    torch.testing.assert_close(feats, feats_whole)
    torch.testing.assert_close(probs, probs_whole)


@pytest.mark.parametrize("preset", ["seed002-mlp-mnist", "seed003-cgan-mnist"])
def test_the_benchmarks_bf16_weights_arm_runs_the_plain_loops_step(preset, monkeypatch):
    """benchmarks/bf16_weights.py compares the plain loop with nets held in bf16 (fp32 master weights)
    against the fp32 one: the same step, so the same FLOPs."""
    monkeypatch.syspath_prepend(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
    from throughput import plain_step_seconds, preset_config  # benchmarks/ imports its siblings by name

    from gankit.data import DatasetInfo

    info = DatasetInfo(name="mnist", resolution=28, channels=1, class_names=tuple(str(i) for i in range(10)))
    images = torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(64) % 10
    cfg = preset_config(preset, 3, 1, ["data.batch_size=8", "train.g_batch_size=8"])
    flops = {}
    for dtype in (torch.float32, torch.bfloat16):
        times, flops[dtype] = plain_step_seconds(cfg, images, labels, info, 2, count_flops=True, weights=dtype)
        assert len(times) == 2 and all(t > 0 for t in times)
    assert flops[torch.float32] == flops[torch.bfloat16] > 0


def test_the_benchmarks_plain_loop_augments_what_d_sees_as_ships_best_does(monkeypatch):
    """The plain arm does the preset's work: DiffAugment of real and fake images in D's step and of G's
    images in G's step (its own transforms, as the reference code writes them), so the ratio compares
    equal work."""
    monkeypatch.syspath_prepend(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
    import throughput
    from throughput import plain_augment, plain_step_seconds, preset_config

    from gankit.data import DatasetInfo

    torch.manual_seed(0)
    x = torch.arange(1, 3 * 16 * 16 + 1, dtype=torch.float).view(3, 1, 16, 16)  # every pixel distinct
    moved = plain_augment(x, "translation")
    for i in range(3):  # a whole-pixel shift of at most 16/8 = 2, zero-filled
        padded = torch.nn.functional.pad(x[i], (2, 2, 2, 2))
        assert sum(torch.equal(moved[i], torch.roll(padded, (dy, dx), (1, 2))[:, 2:18, 2:18])
                   for dy in range(-2, 3) for dx in range(-2, 3)) == 1
    cut = plain_augment(torch.ones(50, 1, 16, 16), "cutout")
    assert (cut == 0).flatten(1).sum(1).max() == 64  # an 8x8 square where it lies inside
    xg = (torch.rand(4, 3, 16, 16) * 2 - 1).requires_grad_(True)
    out = plain_augment(xg, "translation,cutout,color")
    assert out.shape == xg.shape and not torch.equal(out, xg)
    out.sum().backward()
    assert xg.grad.abs().sum() > 0  # G learns through it

    info = DatasetInfo(name="cifar10", resolution=32, channels=3, class_names=("ship",))
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    cfg = preset_config("ships-best", 3, 1, ["data.batch_size=4", "model.g.width=8", "model.d.width=8"])
    labels = torch.zeros(16, dtype=torch.long)
    for dtype in (torch.float32, torch.bfloat16):  # bf16: benchmarks/bf16_weights.py's nets held in bf16
        times, flops = plain_step_seconds(cfg, images, labels, info, 1, count_flops=True, weights=dtype)
        assert len(times) == 1 and flops > 0
    calls = []
    monkeypatch.setattr(throughput, "plain_augment", lambda x, policy: calls.append(policy) or x)
    times, _ = plain_step_seconds(cfg, images, labels, info, 2)
    assert len(times) == 2 and calls == ["translation,cutout,color"] * 3 * 3  # real, fake, G's: 3 steps
