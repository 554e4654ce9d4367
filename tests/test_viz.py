"""gankit.viz: judged grids, animations, interpolations and the clock, curves, the report, TensorBoard."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from gankit import config as C
from gankit.cli import main
from gankit.errors import GankitError
from gankit.run import read_stats
from gankit.sample import load_discriminator, load_generator
from gankit.train.loop import train
from gankit.viz import interpolate as I
from gankit.viz.animate import gif_bytes, sample_frames, spread
from gankit.viz.judge import REAL_COLOUR, Judged, judge, judged_grid
from gankit.viz.plots import plot_curves, smooth
from gankit.viz.report import build_report
from tests.conftest import SHARED
from tests.helpers import tiny_config


def cli(*args):
    return CliRunner().invoke(main, list(map(str, args)))


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory):
    """seed 002's nets, 6 steps, with the judged grid and the report written during training."""
    cfg = tiny_config("seed002-mlp-mnist", SHARED, steps=6,
                      extra=["train.judge_every=3", "train.report_every=3", "train.tensorboard=false"])
    out = tmp_path_factory.mktemp("viz") / "mlp"
    train(cfg, out, progress=False)
    return out


@pytest.fixture(scope="module")
def cgan_run(tmp_path_factory):
    """seed 003's conditional nets, 4 steps."""
    cfg = tiny_config("seed003-cgan-mnist", SHARED, steps=4, extra=["train.tensorboard=false"])
    out = tmp_path_factory.mktemp("viz") / "cgan"
    train(cfg, out, progress=False)
    return out


# ---- judged grid ------------------------------------------------------------------------------------------

def test_loop_writes_judged_grids_and_a_final_report(mlp_run):
    assert [s for s, _ in sample_frames(mlp_run / "judge")] == [3, 6]
    page = (mlp_run / "report.html").read_text()
    assert 'http-equiv="refresh"' not in page  # the run finished: the last report stops reloading
    assert "finished: 6 steps" in page


def test_judge_reports_ds_probabilities_in_eval_mode(mlp_run):
    lg = load_discriminator(mlp_run)
    real = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8)
    z = torch.randn(5, lg.cfg.model.latent_dim)
    lg.D.train()  # judge must switch to eval mode and back
    j = judge(lg.G, lg.D, real=real, real_y=None, z=z, value_range=(-1.0, 1.0), loss="bce")
    assert lg.D.training
    lg.D.eval()
    with torch.no_grad():
        expect_real = torch.sigmoid(lg.D(real.float() / 127.5 - 1))
        expect_fake = torch.sigmoid(lg.D(lg.G(z)))
    torch.testing.assert_close(j.real_scores, expect_real, atol=1e-5, rtol=0)
    torch.testing.assert_close(j.fake_scores, expect_fake, atol=1e-5, rtol=0)
    assert j.probabilities and j.fake.dtype == torch.uint8
    raw = judge(lg.G, lg.D, real=real, real_y=None, z=z, value_range=(-1.0, 1.0), loss="hinge")
    assert not raw.probabilities and torch.allclose(torch.sigmoid(raw.real_scores), j.real_scores, atol=1e-5)


def test_judged_grid_titles_green_over_real_and_red_over_generated():
    imgs = torch.zeros(4, 1, 28, 28, dtype=torch.uint8)
    j = Judged(real=imgs, real_scores=torch.full((4,), 0.9), fake=imgs, fake_scores=torch.full((4,), 0.1),
               probabilities=True)
    a = np.asarray(judged_grid(j)).astype(int)
    half = a.shape[1] // 2
    green = (np.abs(a - REAL_COLOUR).sum(-1) < 60)
    red = (a[..., 0] > 150) & (a[..., 1] < 80) & (a[..., 2] < 80)
    assert green[:, :half].sum() > 20 and green[:, half:].sum() == 0
    assert red[:, half:].sum() > 20 and red[:, :half].sum() == 0


def test_judge_command(mlp_run, tmp_path):
    r = cli("judge", mlp_run, "--out", tmp_path / "j.png", "--n", 6)
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "j.png").width > 300
    for n in (0, 100_000_000):  # the dataset's size capped a huge count without a word
        r = cli("judge", mlp_run, "--out", tmp_path / "big.png", "--n", n)
        assert r.exit_code == 2 and "--n must be between 1 and 1,024" in r.output, r.output
    with pytest.warns(UserWarning, match="the run's dataset has 256 images: the grid shows 256 real and as many "
                                         "generated, not 300"):
        from gankit.viz.judge import judge_run

        judge_run(mlp_run, out=tmp_path / "capped.png", n=300, root=None)


# ---- animation ------------------------------------------------------------------------------------------

def test_animate_makes_gif_strip_and_mp4(mlp_run, tmp_path):
    r = cli("animate", mlp_run, "--out", tmp_path / "evo.gif", "--fps", 4, "--hold", 1)
    assert r.exit_code == 0, r.output
    n = len(sample_frames(mlp_run / "samples"))  # steps 0, 3, 6
    with Image.open(tmp_path / "evo.gif") as gif:
        assert gif.n_frames == n == 3
        durations = []
        for i in range(gif.n_frames):
            gif.seek(i)
            durations.append(gif.info["duration"])
    assert durations == [250, 250, 1000]
    assert Image.open(tmp_path / "evo-strip.png").width > 3 * 64
    mp4 = tmp_path / "evo.mp4"
    if I.__name__ and __import__("gankit.viz.animate", fromlist=["x"]).mp4_available():
        assert mp4.read_bytes()[4:8] == b"ftyp"
    else:
        assert not mp4.exists()


def test_gif_delays_stay_at_or_above_what_browsers_honour():
    f = [Image.new("L", (4, 4), v) for v in (0, 255)]
    with Image.open(__import__("io").BytesIO(gif_bytes(f, durations=1000 // 60))) as g:
        assert g.info["duration"] == 20


def test_a_gif_frame_longer_than_the_format_allows_is_a_clear_error(mlp_run, tmp_path):
    """A GIF's delay is a 16-bit count of centiseconds; Pillow merges equal frames in a row and summed
    --hold 700 into an OverflowError traceback."""
    a, b = Image.new("L", (4, 4), 0), Image.new("L", (4, 4), 255)
    with Image.open(__import__("io").BytesIO(gif_bytes([a, b, b, a], durations=[100, 200, 300, 400]))) as gif:
        assert gif.n_frames == 3  # the two equal frames shown once, for 500 ms
        gif.seek(1)
        assert gif.info["duration"] == 500
    assert gif_bytes([a, b, b], durations=[100, 655_000, 350])  # 655.35 s: the most a frame can show
    with pytest.raises(GankitError, match="at most 655.35 s, and this animation holds one for 655.36 s"):
        gif_bytes([a, b, b], durations=[100, 655_000, 360])
    r = cli("animate", mlp_run, "--out", tmp_path / "a.gif", "--no-mp4", "--hold", "700")
    assert r.exit_code == 2 and "at most 655.35 s" in r.output and "Traceback" not in r.output, r.output
    assert not (tmp_path / "a.gif").exists()


def test_spread_keeps_first_and_last():
    assert spread(100, 5) == [0, 25, 50, 74, 99] or spread(100, 5)[0] == 0 and spread(100, 5)[-1] == 99
    assert spread(3, 8) == [0, 1, 2]


def test_animate_without_samples_is_a_clear_error(tmp_path):
    assert cli("animate", tmp_path).exit_code == 2


def test_animate_skips_a_damaged_grid_and_refuses_absurd_timing(mlp_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(mlp_run, run)
    (run / "samples" / "step-00000003.png").write_bytes(b"not a png")
    r = cli("animate", run, "--out", tmp_path / "evo.gif", "--no-mp4")
    assert r.exit_code == 0 and "step-00000003.png: skipped" in r.output, r.output
    with Image.open(tmp_path / "evo.gif") as gif:
        assert gif.n_frames == 2
    for args in (["--fps", "nan"], ["--fps", "1e-9"], ["--hold", "-5"]):
        r = cli("animate", run, "--out", tmp_path / "evo2.gif", "--no-mp4", *args)
        assert r.exit_code == 2 and "must be between" in r.output and "Traceback" not in r.output, r.output
    r = cli("report", run, "--no-judge", "--out", tmp_path / "r.png")
    assert r.exit_code == 2 and ".html" in r.output


def test_written_files_get_the_mode_a_plain_write_would(tmp_path):
    """mkstemp makes 0600 files; an atomic write must not narrow a picture's permissions."""
    import os

    from gankit.data.files import atomic_write_bytes

    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "new.bin", b"x")
        (tmp_path / "kept.bin").write_bytes(b"x")
        os.chmod(tmp_path / "kept.bin", 0o640)
        atomic_write_bytes(tmp_path / "kept.bin", b"y")
    finally:
        os.umask(old)
    assert (tmp_path / "new.bin").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "kept.bin").stat().st_mode & 0o777 == 0o640


# ---- interpolation, scaling, latent walks -----------------------------------------------------------------

def test_slerp_endpoints_and_norm():
    z0 = torch.tensor([[3.0, 0.0], [1.0, 1.0]])
    z1 = torch.tensor([[0.0, 3.0], [2.0, 2.0]])
    p = I.slerp(z0, z1, torch.linspace(0, 1, 5))
    torch.testing.assert_close(p[:, 0], z0)
    torch.testing.assert_close(p[:, -1], z1)
    torch.testing.assert_close(p[0].norm(dim=1), torch.full((5,), 3.0))  # on the circle, not the chord
    torch.testing.assert_close(p[1, 2], torch.tensor([1.5, 1.5]))  # parallel vectors: linear


def test_ease_is_the_seeds_cosine():
    e = I.ease(np.arange(61))
    assert e[0] == 0 and abs(e[30] - 0.5) < 1e-12 and abs(e[60] - 1) < 1e-12 and np.all(np.diff(e) > 0)


def test_class_interpolation_ends_are_the_pure_classes(cgan_run):
    lg = load_generator(cgan_run)
    imgs = I.class_interpolation(lg, 7, 9, steps=5, rows=3, seed=1)
    assert imgs.shape == (3, 5, 1, 28, 28)
    z = I._row_noise(lg, 3, 1, 0.5)
    torch.testing.assert_close(imgs[:, 0], I.render(lg, z, torch.full((3,), 7)))
    torch.testing.assert_close(imgs[:, -1], I.render(lg, z, torch.full((3,), 9)))
    mid = torch.zeros(3, 10)
    mid[:, 7] = mid[:, 9] = 0.5
    torch.testing.assert_close(imgs[:, 2], I.render(lg, z, mid))


def test_class_scaling_starts_from_no_label(cgan_run):
    lg = load_generator(cgan_run)
    imgs = I.class_scaling(lg, 4, steps=4, top=3.0, rows=2)
    z = I._row_noise(lg, 2, 0)
    torch.testing.assert_close(imgs[:, 0], I.render(lg, z, torch.zeros(2, 10)))
    third = torch.zeros(2, 10)
    third[:, 4] = 2.0
    torch.testing.assert_close(imgs[:, 2], I.render(lg, z, third))


def test_latent_interpolation_any_generator(mlp_run, cgan_run, tmp_path):
    lg = load_generator(mlp_run)
    imgs = I.latent_interpolation(lg, steps=4, rows=2, seed=3)
    torch.testing.assert_close(imgs[1, 0], I.render(lg, I._row_noise(lg, 1, 5), None)[0])  # row 1 starts at seed 5
    assert not torch.equal(imgs[0, 0], imgs[0, -1])
    r = cli("interpolate", cgan_run, "--latent", "--class", "3", "--steps", 4, "--rows", 2, "--out", tmp_path / "l.gif")
    assert r.exit_code == 0, r.output
    with Image.open(tmp_path / "l.gif") as g:
        assert g.n_frames == 6  # there and back: 4 + 2


def test_interpolate_commands_and_their_errors(mlp_run, cgan_run, tmp_path):
    r = cli("interpolate", cgan_run, "--from", 7, "--to", 9, "--out", tmp_path / "i.png")
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "i.png").size == (10 * (56 + 2) + 2,) * 2  # 10 x 10 at 2x scale
    assert cli("interpolate", cgan_run, "--scale", 4, "--out", tmp_path / "s.png").exit_code == 0
    r = cli("interpolate", mlp_run, "--from", 7, "--to", 9)
    assert r.exit_code == 2 and "not conditional" in r.output
    assert "choose one" in cli("interpolate", cgan_run).output
    assert "together" in cli("interpolate", cgan_run, "--from", 7).output
    # a file name it cannot write is refused before the nets load (it was found after the rendering)
    r = cli("interpolate", "/nonexistent/run", "--latent", "--out", tmp_path / "i.txt")
    assert r.exit_code == 2 and "use .png, .jpg, .gif or .mp4" in r.output
    r = cli("interpolate", cgan_run, "--latent", "--steps", 2, "--rows", 1, "--no-ema", "--out", tmp_path / "n.png")
    assert r.exit_code == 0 and "G)" in r.output, r.output  # which generator it drew with


# ---- the clock -------------------------------------------------------------------------------------------

def test_clock_fades_only_the_changing_digits(cgan_run):
    lg = load_generator(cgan_run)
    frames, settled = I.clock(lg, start="12:39")
    assert len(frames) == 61 and settled == [0, 60]
    zero = torch.zeros(4, lg.cfg.model.latent_dim)

    def display(digits):
        return I.render(lg, zero, torch.tensor(digits))  # [4, 1, 28, 28]

    first, last = np.asarray(frames[0]), np.asarray(frames[-1])
    start, end = display([1, 2, 3, 9]), display([1, 2, 4, 0])
    assert first.shape == (28 * 4, (4 * 28 + 9) * 4)  # 4 digits and a colon at 4x
    zoom = lambda t: t[0].numpy().repeat(4, 0).repeat(4, 1)  # noqa: E731
    assert np.array_equal(first[:, : 28 * 4], zoom(start[0]))
    assert np.array_equal(last[:, -28 * 4 :], zoom(end[3]))
    # the hours never change: identical in every frame
    assert all(np.array_equal(np.asarray(f)[:, : 56 * 4], first[:, : 56 * 4]) for f in frames)


def test_clock_wraps_midnight_and_counts_like_the_seed(cgan_run):
    assert I._clock_digits(I.parse_time("23:59") + 1) == [0, 0, 0, 0]
    mixes = I.fade_sequence([[0], [1]], list(range(10)), 10)
    assert mixes.shape == (61, 1, 10)
    torch.testing.assert_close(mixes.sum(-1), torch.ones(61, 1))
    assert abs(float(mixes[30, 0, 1]) - 0.5) < 1e-6
    lg = load_generator(cgan_run)
    frames, settled = I.clock(lg, count="0-9")
    assert len(frames) == 600 and settled == list(range(0, 600, 60))  # the seed's 60 * 10 frames, then it loops
    for bad in ("25:00", "12-30", "ab"):
        with pytest.raises(GankitError):
            I.parse_time(bad)
    with pytest.raises(GankitError):
        I.parse_count("5-3")


def test_clock_command(mlp_run, cgan_run, tmp_path):
    r = cli("clock", cgan_run, "--time", "12:34", "--out", tmp_path / "c.gif")
    assert r.exit_code == 0, r.output
    with Image.open(tmp_path / "c.gif") as g:
        durations = []
        for i in range(g.n_frames):  # Pillow merges identical consecutive frames, adding their delays
            g.seek(i)
            durations.append(g.info["duration"])
    assert durations[0] >= 1000 and sum(durations) == 1000 + 59 * 20 + 1000  # settled, the fade, settled
    r = cli("clock", mlp_run, "--out", tmp_path / "x.gif")
    assert r.exit_code == 2 and "conditional" in r.output
    for args, message in ((["--minutes", 100_000], "--minutes must be 1 to 1440"),
                          (["--out", tmp_path / "c.txt"], "give a .gif or .mp4 file name"),
                          (["--fps", 0], "--fps must be between"), (["--time", ""], "give the time as HH:MM"),
                          (["--count", "0-9", "--time", "10:00"], "--count shows one digit counting, not a clock")):
        r = cli("clock", "/nonexistent/run" if "--out" in args else cgan_run, *args,
                *([] if "--out" in args else ["--out", tmp_path / "d.gif"]))
        assert r.exit_code == 2 and message in r.output, r.output


# ---- curves ------------------------------------------------------------------------------------------------

def test_smoothing_is_debiased():
    np.testing.assert_allclose(smooth(np.full(50, 3.0)), 3.0)
    s = smooth(np.array([0.0, 10.0] * 50))
    assert 3 < s[-1] < 7


def test_plot_command_and_eval_panel(mlp_run, tmp_path):
    r = cli("plot", mlp_run, "--out", tmp_path / "c.png")
    assert r.exit_code == 0, r.output
    h2 = Image.open(tmp_path / "c.png").height
    stats = read_stats(__import__("gankit.run", fromlist=["RunDir"]).RunDir(mlp_run))
    stats.append({"step": 6, "kind": "eval", "dfid2k-test": 42.0})
    with_eval = Image.open(__import__("io").BytesIO(plot_curves(stats)))
    assert with_eval.height > 1.3 * h2  # a third panel for the metrics
    with pytest.raises(GankitError):
        plot_curves([])


def test_damaged_stats_lines_are_skipped_by_plots_reports_and_resume(mlp_run, tmp_path):
    """Lines that are not JSON objects with a numeric step (not UTF-8, null, a list, a string step) are
    skipped like a torn line; they used to end plot, report and train --resume in a traceback."""
    import shutil

    from gankit.run import RunDir

    run = tmp_path / "run"
    shutil.copytree(mlp_run, run)
    good = read_stats(RunDir(run))
    with open(run / "stats.jsonl", "ab") as fh:
        fh.write(b'\xff\xfe{"step":\nnull\n[1, 2]\n{"step": "7", "kimg": 0.2, "d_loss": 1.0}\n'
                 b'{"step": true}\n{"step": NaN}\n')
    assert read_stats(RunDir(run)) == good
    assert cli("plot", run, "--out", tmp_path / "c.png").exit_code == 0
    r = cli("report", run, "--no-judge", "--out", tmp_path / "r.html")
    assert r.exit_code == 0, r.output
    r = cli("train", "--resume", run, "--steps", "7", "--no-progress")
    assert r.exit_code == 0 and "Traceback" not in r.output, r.output
    assert [x["step"] for x in read_stats(RunDir(run), "train")][-1] == 7


# ---- report --------------------------------------------------------------------------------------------------

def test_report_is_self_contained(mlp_run, tmp_path):
    (mlp_run / "eval").mkdir(exist_ok=True)
    page = build_report(mlp_run, refresh=30)
    assert '<meta http-equiv="refresh" content="30">' in page
    for section in ("Learning curves", "Samples", "Evolution", "How D judges", "Metrics", "Checkpoints", "Config"):
        assert f"<h2>{section}</h2>" in page
    assert 'id="metrics"' in page and "step-00000006" in page and "[train]" in page
    assert "http://" not in page and "https://" not in page  # nothing fetched from the network
    srcs = [s.split('"')[0] for s in page.split('src="')[1:]]
    # curves, latest samples, evolution GIF and strip, judged grid (no best checkpoint without eval)
    assert len(srcs) == 5 and all(s.startswith("data:image/") for s in srcs)
    r = cli("report", mlp_run, "--out", tmp_path / "r.html")
    assert r.exit_code == 0, r.output
    assert "refresh" not in (tmp_path / "r.html").read_text().split("<title>")[0]


def test_report_notes_a_section_it_cannot_make_and_writes_the_rest(mlp_run, tmp_path):
    """Damaged sample grids, or checkpoints too damaged to judge from, cost the whole page before."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(mlp_run, run)
    shutil.rmtree(run / "judge")
    for grid in (run / "samples").glob("step-*.png"):
        grid.write_bytes(b"junk")
    for weights in (run / "checkpoints").glob("*/weights.safetensors"):
        weights.write_bytes(weights.read_bytes() + b"x")
    r = cli("report", run, "--out", tmp_path / "r.html")  # judges the latest checkpoint when the run has no grid
    assert r.exit_code == 0 and "Traceback" not in r.output, r.output
    page = (tmp_path / "r.html").read_text()
    assert "no evolution: " in page and "no judged grid: " in page
    for section in ("Learning curves", "Metrics", "Checkpoints", "Config"):
        assert f"<h2>{section}</h2>" in page


# ---- config and TensorBoard ---------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["train.tensorboard='maybe'", "train.judge_every=0", "train.report_every=-1"])
def test_config_refuses_bad_viz_settings(bad):
    with pytest.raises(GankitError):
        C.build("seed002-mlp-mnist", overrides=[bad])


def test_tensorboard_true_without_the_package_is_clear(monkeypatch):
    from gankit.viz import tensorboard as tb

    monkeypatch.setattr(tb, "tensorboard_available", lambda: False)
    assert tb.wanted("auto") is False
    with pytest.raises(GankitError, match="pip install"):
        tb.wanted(True)


def test_tensorboard_mirrors_stats_and_samples(tmp_path):
    from gankit.viz.tensorboard import tensorboard_available

    if not tensorboard_available():
        pytest.skip("tensorboard is not installed (pip install 'gankit[tensorboard]')")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = tiny_config("seed002-mlp-mnist", SHARED, steps=6, extra=["train.tensorboard=true", "train.judge_every=6"])
    train(cfg, tmp_path / "run", progress=False)
    acc = EventAccumulator(str(tmp_path / "run" / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    records = [r for r in read_stats(__import__("gankit.run", fromlist=["RunDir"]).RunDir(tmp_path / "run"))
               if "kimg" in r]
    d_loss = acc.Scalars("loss/d_loss")
    assert [e.step for e in d_loss] == [r["step"] for r in records]
    assert [round(e.value, 5) for e in d_loss] == [round(r["d_loss"], 5) for r in records]
    assert [e.step for e in acc.Images("samples/fixed_noise")] == [0, 3, 6]
    assert [e.step for e in acc.Images("samples/judged")] == [6]
    json.dumps(acc.Tags())  # tags are plain strings


def test_the_watcher_is_closed_when_training_fails(tmp_path, monkeypatch):
    # TensorBoard's events are flushed however the loop ends, not only when it reaches its last step
    import gankit.train.loop as loop
    from gankit.viz.watch import Watcher

    closed = []
    monkeypatch.setattr(Watcher, "close", lambda self: closed.append(True))
    real = loop.append_stats

    def fails_at_step_4(run, record):
        if record.get("step") == 4:
            raise GankitError("the stats file cannot be written")
        real(run, record)

    monkeypatch.setattr(loop, "append_stats", fails_at_step_4)
    cfg = tiny_config("seed002-mlp-mnist", SHARED, steps=6, extra=["train.tensorboard=false"])
    with pytest.raises(GankitError, match="cannot be written"):
        train(cfg, tmp_path / "run", progress=False)
    assert closed == [True]


def test_a_failing_picture_warns_and_training_goes_on(tmp_path, monkeypatch):
    import gankit.viz.judge as J

    def broken(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(J, "judged_grid", broken)
    cfg = tiny_config("seed002-mlp-mnist", SHARED, steps=3, extra=["train.judge_every=1", "train.tensorboard=false"])
    with pytest.warns(UserWarning, match="judged grid.*disk full") as caught:
        result = train(cfg, tmp_path / "run", progress=False)
    assert result.step == 3 and len([w for w in caught if "judged grid" in str(w.message)]) == 1  # warned once


@pytest.mark.parametrize("preset", C.preset_names())
def test_every_preset_is_watched_and_shown(preset, tmp_path):
    """Each seed preset, one step: the loop's judged grid, a latent walk, and the conditional pictures."""
    cfg = tiny_config(preset, SHARED, steps=1, extra=["train.judge_every=1", "train.tensorboard=false"])
    run = tmp_path / "run"
    train(cfg, run, progress=False)
    assert (run / "judge" / "step-00000001.png").exists()
    r = cli("interpolate", run, "--latent", "--steps", 2, "--rows", 1, "--out", tmp_path / "l.png")
    assert r.exit_code == 0, r.output
    if cfg.model.conditional:
        assert cli("interpolate", run, "--from", 0, "--to", 1, "--steps", 3, "--rows", 2,
                   "--out", tmp_path / "i.png").exit_code == 0
        assert cli("clock", run, "--count", "0-1", "--out", tmp_path / "c.gif").exit_code == 0


def test_tensorboard_tags_group_records_by_kind():
    from gankit.viz.tensorboard import tag

    assert tag("d_loss", {"step": 2, "kimg": 0.1, "d_loss": 0.5}) == "loss/d_loss"
    assert tag("d_acc_real", {"step": 2, "kimg": 0.1}) == "accuracy/d_acc_real"
    assert tag("val_loss", {"step": 2, "kind": "schedule"}) == "schedule/val_loss"
    assert tag("lr_scale", {"step": 2, "kind": "rollback"}) == "rollback/lr_scale"  # not mistaken for a schedule
    assert tag("dfid2k-test", {"step": 2, "kind": "eval"}) == "eval/dfid2k-test"


def test_a_picture_too_wide_for_a_jpeg_is_a_clear_error(tmp_path):
    from gankit.viz.grid import save_image

    with pytest.raises(GankitError, match=r"a JPEG can be at most 65,500 pixels on a side, and this picture is "
                                          r"70,000 x 2; write a .png"):
        save_image(Image.new("L", (70_000, 2)), tmp_path / "wide.jpg")
    assert not (tmp_path / "wide.jpg").exists()
    save_image(Image.new("L", (70_000, 2)), tmp_path / "wide.png")
