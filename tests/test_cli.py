import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from gankit import config as C
from gankit.cli import main
from gankit.run import RunDir
from tests.helpers import tiny_overrides


def run(*args):
    result = CliRunner().invoke(main, list(map(str, args)))
    return result


def test_presets_lists_with_descriptions():
    r = run("presets")
    assert r.exit_code == 0 and "seed002-mlp-mnist" in r.output and "fully-connected" in r.output


def test_dry_run_prints_config_and_layer_tables():
    r = run("train", "--preset", "seed002-mlp-mnist", "--dry-run")
    assert r.exit_code == 0, r.output
    assert "[model.g]" in r.output and "generator (mlp): 1,493,520 params" in r.output
    assert "discriminator (mlp): 533,505 params" in r.output


@pytest.mark.parametrize("preset, sets, message", [
    # what training refuses once it has the data and the nets, --dry-run refuses too (it used to pass them)
    ("mnist-best", ["loss.gp_weight=10", "model.d.bn=true"], "batch norm in D mixes the images"),
    ("seed002-mlp-mnist", ["data.batch_size=1"], "one value per channel and image, so it needs at least 2"),
    ("mnist-cond-best", ["data.dataset=mnist:3"], "the training images (mnist:3) hold one class (3)"),
])
def test_dry_run_refuses_what_training_would(preset, sets, message):
    r = run("train", "--preset", preset, "--dry-run", *[a for s in sets for a in ("--set", s)])
    assert r.exit_code == 2 and message in r.output, r.output


def test_batch_norm_on_feature_maps_trains_on_one_image(tmp_path):
    """BatchNorm2d over a 7x7 map has 49 values per channel even at a batch of one: not refused (only
    dense features and 1x1 maps are), and it trains."""
    sets = ["model.clusters=0", "model.g.label_input=false", "model.d.classifier=false", "data.batch_size=1",
            "data.dataset=mnist-demo", "data.limit=16", "train.steps=2", "train.threads=1", "model.g.width=8",
            "model.d.width=8", "train.tensorboard=false"]
    args = [a for s in sets for a in ("--set", s)]
    assert run("train", "--preset", "mnist-best", "--dry-run", *args).exit_code == 0
    r = run("train", "--preset", "mnist-best", "--out", tmp_path / "run", "--no-progress", *args)
    assert r.exit_code == 0, r.output


def test_empty_paths_and_a_config_inside_its_own_run_are_refused(tmp_path):
    for args in (["--out", ""], ["--resume", " "], ["--config", ""]):
        r = run("train", "--preset" if args[0] != "--config" else "--steps", "seed002-mlp-mnist"
                if args[0] != "--config" else "3", *args)
        assert r.exit_code == 2 and f"{args[0]} is empty" in r.output, r.output
    exp = tmp_path / "exp1"
    exp.mkdir()
    (exp / "config.toml").write_text(C.dumps(C.build("seed002-mlp-mnist")))
    r = run("train", "--config", exp / "config.toml", "--out", exp, "--force")
    assert r.exit_code == 2 and "is the file a run in --out" in r.output, r.output
    assert sorted(p.name for p in exp.iterdir()) == ["config.toml"]


@pytest.mark.parametrize("preset", C.preset_names())
def test_every_preset_dry_runs(preset):
    r = run("train", "--preset", preset, "--dry-run")
    assert r.exit_code == 0, r.output
    assert f"name = \"{preset}\"" in r.output and "# generator (" in r.output and "# discriminator (" in r.output


def train_tiny(preset, out, steps):
    """`gankit train` of ``preset`` for a few steps on the embedded demo set."""
    sets = [a for o in tiny_overrides(steps) for a in ("--set", o)]
    r = run("train", "--preset", preset, "--set", "data.dataset=mnist-demo", *sets, "--out", out, "--no-progress")
    assert r.exit_code == 0, r.output
    assert f"step {steps}" in r.output


def test_train_then_sample(tmp_path):
    out = tmp_path / "run"
    train_tiny("seed002-mlp-mnist", out, 6)
    r = run("sample", out, "--n", "10", "--out", tmp_path / "g.png", "--seed", "3")
    assert r.exit_code == 0, r.output
    img = Image.open(tmp_path / "g.png")
    assert img.size[0] > 28 * 3
    r = run("sample", out, "--n", "10", "--out", tmp_path / "s.npz")
    z = np.load(tmp_path / "s.npz")
    assert z["images"].shape == (10, 28, 28, 1) and z["images"].dtype == np.uint8 and z["z"].shape == (10, 100)
    r2 = run("sample", out, "--n", "10", "--out", tmp_path / "t.npz")
    assert r2.exit_code == 0 and np.array_equal(np.load(tmp_path / "t.npz")["images"], z["images"])  # same seed
    # resume to more steps, then refuse to start over in the same folder without --force
    r = run("train", "--resume", out, "--steps", "9", "--no-progress")
    assert r.exit_code == 0 and "step 9" in r.output, r.output
    r = run("train", "--preset", "seed002-mlp-mnist", "--out", out)
    assert r.exit_code == 2 and "already holds a run" in r.output
    r = run("sample", out, "--class", "3", "--out", tmp_path / "c.png")
    assert r.exit_code == 2 and "not conditional" in r.output
    (tmp_path / "afile").write_text("x")  # outputs that cannot be written, bad devices: one clear line
    bad = [(["sample", out, "--out", tmp_path / "afile" / "x.png"], "a file is in the way"),
           (["sample", out, "--device", "bogus"], "unknown device"),
           (["eval", out, "--device", "bogus"], "unknown device"),
           (["eval", out, "--real", "mnist-demo"], "not both"),
           (["sample", out, "--checkpoint", ""], "--checkpoint is empty"),
           (["data", "show", "mnist-demo", "--out", tmp_path / "x.bmp"], "give a .png")]
    if not torch.cuda.is_available():
        bad.append((["eval", out, "--device", "cuda"], "PyTorch sees no CUDA GPU"))
    for args, message in bad:
        r = run(*args, "--n", "4")
        assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output, r.output
    # a resume that does not start (a dry run, a setting the run's nets cannot load) keeps its config
    config = (out / "config.toml").read_bytes()
    r = run("train", "--resume", out, "--set", "optim.g.lr=0.5", "--dry-run")
    assert r.exit_code == 0 and (out / "config.toml").read_bytes() == config
    r = run("train", "--resume", out, "--set", "model.g.hidden=[8]", "--steps", "12", "--no-progress")
    assert r.exit_code == 2 and "does not fit this config" in r.output and "Traceback" not in r.output
    assert (out / "config.toml").read_bytes() == config


def test_conditional_sampling(tmp_path):
    out = tmp_path / "run"
    train_tiny("seed003-cgan-mnist", out, 4)
    r = run("sample", out, "--per-class", "3", "--out", tmp_path / "grid.npz")
    assert r.exit_code == 0, r.output
    z = np.load(tmp_path / "grid.npz")
    assert z["labels"].tolist() == list(range(10)) * 3  # row by row, one column per digit
    r = run("sample", out, "--per-class", "3", "--out", tmp_path / "grid.png")
    w, h = Image.open(tmp_path / "grid.png").size
    assert w > 3 * h  # ten columns, three rows
    r = run("sample", out, "--class", "7", "--class", "9", "--n", "6", "--out", tmp_path / "s.npz")
    assert r.exit_code == 0 and np.load(tmp_path / "s.npz")["labels"].tolist() == [7, 7, 7, 9, 9, 9]
    r = run("sample", out, "--class", "eleven")
    assert r.exit_code == 2 and "no class 'eleven'" in r.output
    for k in (16, 32):  # the first 16 of 32 samples are the 16 of the same seed, labels and all
        assert run("sample", out, "--n", k, "--out", tmp_path / f"p{k}.npz").exit_code == 0
    a, b = np.load(tmp_path / "p16.npz"), np.load(tmp_path / "p32.npz")
    assert np.array_equal(a["labels"], b["labels"][:16]) and np.array_equal(a["images"], b["images"][:16])
    # counts that were dropped without a word: --n beside --per-class, and fewer images than classes asked for
    r = run("sample", out, "--per-class", "3", "--n", "5")
    assert r.exit_code == 2 and "leave out --n" in r.output
    r = run("sample", out, "--class", "1", "--class", "2", "--class", "3", "--n", "2")
    assert r.exit_code == 2 and "--n 2 is fewer than the 3 classes" in r.output
    # "latest" (the name of the pointer file beside the checkpoints) is the newest good checkpoint
    r = run("sample", out, "--checkpoint", "latest", "--n", "4", "--out", tmp_path / "l.npz")
    assert r.exit_code == 0 and "(step 4," in r.output, r.output
    r = run("sample", out, "--checkpoint", "step-99", "--out", tmp_path / "l.npz")
    assert r.exit_code == 2 and "no checkpoint 'step-99'; choose from step-" in r.output, r.output
    r = run("sample", out, "--checkpoint", "step-3", "--n", "4", "--out", tmp_path / "l.npz")
    assert r.exit_code == 0 and "(step 3," in r.output, r.output  # the README's step-N, unpadded
    (RunDir(out).checkpoints / "step-\u00b2").mkdir()  # digits int() cannot read, on the command line or on disk
    r = run("sample", out, "--checkpoint", "step-\u00b2\u00b2", "--out", tmp_path / "l.npz")
    assert r.exit_code == 2 and "no checkpoint 'step-\u00b2\u00b2'; choose from" in r.output, r.output
    r = run("sample", out, "--n", "4", "--out", tmp_path / "l.npz")
    assert r.exit_code == 0 and "(step 4," in r.output, r.output
    # a count that cannot fit in memory, or a file name gankit cannot write: refused before any sampling
    t0 = time.perf_counter()
    r = run("sample", out, "--per-class", 10**9, "--out", tmp_path / "huge.npz")
    assert r.exit_code == 2 and "10,000,000,000 images of 1x28x28 need" in r.output and "ask for fewer" in r.output
    r = run("sample", "/nonexistent/run", "--out", tmp_path / "s.txt")
    assert r.exit_code == 2 and "use a .png, .jpg or .npz file name" in r.output
    assert time.perf_counter() - t0 < 30 and not (tmp_path / "huge.npz").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--preset", "nope"], "unknown preset 'nope'"),
        (["train", "--preset", "seed002-mlp-mnist", "--set", "train.stepz=3"], "did you mean 'steps'"),
        (["sample", "/nonexistent/run"], "not a gankit run directory"),
        (["data", "check", "mnist", "--data-root", "/nonexistent"], "not found in /nonexistent/mnist"),
        (["list", "lossez"], "did you mean 'losses'"),
        (["train", "--config", "/nonexistent.toml"], "cannot read config"),
        (["train", "--resume", "/nonexistent/run"], "not a gankit run directory"),
        (["eval", "/nonexistent/run"], "not a gankit run directory"),
        (["eval", "--real", "folder:/x"], "no test split"),
        (["sample", "/nonexistent/run", "--n", "0"], "not a gankit run directory"),
        (["train", "--preset", ""], "--preset is empty"),
        (["train", "--preset", "seed002-mlp-mnist", "--set", "optim.g.lr=nan", "--dry-run"], "must be a finite number"),
        (["train", "--preset", "seed002-mlp-mnist", "--set", "train.seed=99999999999999999999"], "out of range"),
        (["train", "--preset", "seed002-mlp-mnist", "--set", "model.g.hidden=[0]", "--dry-run"], "positive integer"),
        (["train", "--preset", "seed002-mlp-mnist", "--set", "model.d.hidden=5", "--dry-run"], "in brackets, e.g. [5]"),
        (["train", "--preset", "seed002-mlp-mnist", "--set", "data.stacked_seed=-1"], "stacked_seed must be >= 0"),
        (["eval", "/nonexistent/run", "--metrics", ","], "names no metric"),
        (["train", "--preset", "seed002-mlp-mnist", "--set", "data.dataset='mnist-demo:11'", "--dry-run"],
         "has no class '11'"),
        (["train", "--preset", "seed002-mlp-mnist", "--set", "data.resolution=5", "--dry-run"], "does not match"),
        (["evaluator", "train", "mnist", "--epochs", "0"], "--epochs 0: must be positive"),
        (["evaluator", "train", "mnist", "--lr", "-1"], "--lr -1.0: must be positive"),
        (["sample", "/nonexistent/run", "--seed", "99999999999999999999"], "Invalid value for '--seed'"),
    ],
)
def test_errors_are_one_clear_line(args, message):
    r = run(*args)
    assert r.exit_code == 2
    assert message in r.output and "Traceback" not in r.output


def test_a_dry_run_with_a_misspelt_net_setting_prints_only_the_error():
    """The whole config came first, misspelt key included, then the error (and the key in quotes)."""
    r = run("train", "--preset", "seed002-mlp-mnist", "--set", "model.g.hiden=[8]", "--dry-run")
    assert r.exit_code == 2 and r.output.startswith("error: unknown setting model.g.hiden for")
    assert "did you mean 'hidden'" in r.output and "[model" not in r.output


def test_data_list_tells_present_partial_and_absent_by_the_files(tmp_path):
    (tmp_path / "mnist").mkdir()
    (tmp_path / "cifar10").mkdir()  # an empty folder holds no dataset
    (tmp_path / "mnist" / "train-images-idx3-ubyte.gz").write_bytes(b"x")
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                 "t10k-labels-idx1-ubyte.gz"):
        (tmp_path / "fashion-mnist").mkdir(exist_ok=True)
        (tmp_path / "fashion-mnist" / name).write_bytes(b"x")
    r = run("data", "list", "--data-root", tmp_path)
    state = {line.split()[0]: line.split("[")[-1].rstrip("]") for line in r.output.splitlines()[1:] if "[" in line}
    assert state["mnist"] == "partial" and state["cifar10"] == "absent" and state["fashion-mnist"] == "present"
    assert state["mnist-demo"] == "embedded" and r.output.splitlines()[0] == f"data root: {tmp_path}"
    r = run("data", "list", "--data-root", tmp_path / "nowhere")
    assert "(no such folder)" in r.output.splitlines()[0]


def test_data_commands(shared_data, tmp_path):
    r = run("data", "list", "--data-root", shared_data)
    assert r.exit_code == 0 and "cifar10" in r.output and "[present]" in r.output
    r = run("data", "check", "fashion-mnist", "--data-root", shared_data)
    assert r.exit_code == 0 and "70,000 images" in r.output and "Ankle boot" in r.output and r.output.endswith("ok\n")
    r = run("data", "show", "mnist", "--data-root", shared_data, "--out", tmp_path / "d.png", "--n", "16")
    assert r.exit_code == 0 and Image.open(tmp_path / "d.png").size[0] > 100


def test_python_dash_m():
    out = subprocess.run([sys.executable, "-m", "gankit", "list"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "datasets:" in out.stdout and "mnist" in out.stdout
