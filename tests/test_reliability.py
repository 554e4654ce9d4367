"""Nothing lost when training is killed, diverges, runs out of disk or is fed a crafted file."""

import errno
import json
import os
import pickle
import warnings

import pytest
import torch
from safetensors.torch import save as safetensors_bytes

from gankit import registry
from gankit.data.files import file_digest
from gankit.errors import GankitError
from gankit.losses import Objective
from gankit.run import RunDir, latest_good_checkpoint, load_checkpoint, read_stats, save_checkpoint
from gankit.sample import load_generator
from gankit.train.loop import train
from tests.conftest import SHARED
from tests.helpers import tiny_config


def _cfg(extra=(), steps=6):
    """Seed 002 with small nets: seconds per run, checkpoints at steps 0, 3, 6, logs at 2, 4, 6."""
    small = ["model.g.hidden=[32, 64]", "model.d.hidden=[64]", "train.threads=1"]
    return tiny_config("seed002-mlp-mnist", SHARED, steps=steps, extra=small + list(extra))


@pytest.fixture(autouse=True)
def _restore_threads():
    # train.threads=1 (tiny nets on a shared machine run fastest on one thread) sets a process-wide value
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


# ---- divergence recovery -----------------------------------------------------------------------------------


def _nan_once_at(monkeypatch, call: int, *, forever: bool = False) -> list[int]:
    """Make G's loss NaN on its ``call``-th evaluation (and after it, if ``forever``); returns the call log."""
    real = registry.get("loss", "bce")
    calls: list[int] = []

    def g(logits):
        calls.append(1)
        loss = real.g(logits)
        hit = len(calls) == call or (forever and len(calls) >= call)
        return loss * float("nan") if hit else loss

    fake = Objective(d_real=real.d_real, d_fake=real.d_fake, g=g, uses_targets=real.uses_targets)
    monkeypatch.setitem(registry._REGISTRY["loss"], "bce", fake)
    return calls


def test_injected_nan_rolls_back_lowers_lr_and_recovers(monkeypatch, tmp_path):
    """A NaN in G's loss at step 4 (a log step): back to the step-3 checkpoint, LR halved, the run finishes."""
    _nan_once_at(monkeypatch, 4)
    with pytest.warns(UserWarning, match=r"step 4: diverged \(g_loss=nan\); rolled back to step 3"):
        result = train(_cfg(), tmp_path / "run", progress=False)
    assert result.step == 6
    stats = read_stats(result.run)
    rollbacks = [r for r in stats if r.get("kind") == "rollback"]
    assert len(rollbacks) == 1
    rb = rollbacks[0]
    assert (rb["step"], rb["diverged_at"], rb["attempt"], rb["lr_scale"]) == (3, 4, 1, 0.5)
    assert rb["lr_g"] == pytest.approx(0.005) and rb["lr_d"] == pytest.approx(0.005)  # seed 002's SGD(0.01)
    logs = [r for r in stats if "kind" not in r]
    assert [r["step"] for r in logs] == [2, 4, 6]
    assert all(all(v == v for v in r.values()) for r in logs)  # nothing NaN was logged
    assert [r["lr_g"] for r in logs] == pytest.approx([0.01, 0.005, 0.005])
    # the lowered learning rate is in the checkpoint, so a resumed run keeps it
    _, state = load_checkpoint(latest_good_checkpoint(result.run))
    assert state["recovery"]["lr_scale"] == 0.5 and state["opt_g"]["lr_scale"] == 0.5
    assert state["opt_g"]["opt"]["param_groups"][0]["lr"] == pytest.approx(0.005)
    assert all(torch.isfinite(w).all() for w in load_generator(result.run.path).G.state_dict().values())
    monkeypatch.undo()
    more = _cfg(steps=8)
    train(more, result.run.path, resume=True, progress=False)
    assert [r["lr_g"] for r in read_stats(result.run) if "kind" not in r][-1] == pytest.approx(0.005)


def test_nan_between_log_steps_is_never_checkpointed(monkeypatch, tmp_path):
    """NaN at step 3 (a checkpoint step that is not a log step): caught before the checkpoint is written."""
    _nan_once_at(monkeypatch, 3)
    with pytest.warns(UserWarning, match=r"step 3: diverged .* rolled back to step 0"):
        result = train(_cfg(), tmp_path / "run", progress=False)
    assert result.step == 6
    rb = [r for r in read_stats(result.run) if r.get("kind") == "rollback"]
    assert [(r["step"], r["diverged_at"]) for r in rb] == [(0, 3)]


def test_persistent_nan_stops_after_k_retries(monkeypatch, tmp_path):
    _nan_once_at(monkeypatch, 4, forever=True)
    cfg = _cfg(extra=["train.divergence_retries=2", "train.divergence_lr_factor=0.1"])
    with pytest.raises(GankitError, match=r"diverged at step 4.*after 2 rollback\(s\).*0.01 x.*intact"), \
            pytest.warns(UserWarning):
        train(cfg, tmp_path / "run", progress=False)
    run = RunDir(tmp_path / "run")
    assert [r["lr_scale"] for r in read_stats(run) if r.get("kind") == "rollback"] == pytest.approx([0.1, 0.01])
    assert latest_good_checkpoint(run).name == "step-00000003"  # the good checkpoints are untouched


def test_loss_explosion_threshold(tmp_path):
    cfg = _cfg(extra=["train.loss_explosion_above=1e-6", "train.divergence_retries=1"])
    with pytest.raises(GankitError, match=r"above train.loss_explosion_above = 1e-06.*after 1 rollback"), \
            pytest.warns(UserWarning):
        train(cfg, tmp_path / "run", progress=False)


def _stuck_warnings(monkeypatch, tmp_path, *, bias: float | None) -> tuple[list[str], list[dict]]:
    """Train with Keras' clipping, D's output bias set to ``bias`` first (None: as built); the stuck warnings
    and the logged records."""
    import gankit.train.loop as loop

    build = loop.make_nets

    def nets(cfg, info):
        G, D = build(cfg, info)
        if bias is not None:  # every logit near ``bias``: beyond the clip's +-16.1 when |bias| is large
            [*_, last] = (m for m in D.modules() if isinstance(m, torch.nn.Linear))
            torch.nn.init.constant_(last.bias, bias)
            torch.nn.init.zeros_(last.weight)
        return G, D

    monkeypatch.setattr(loop, "make_nets", nets)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = train(_cfg(extra=["loss.clip_eps=1e-7"]), tmp_path / "run", progress=False)
    stuck = [str(w.message) for w in caught if "passes no gradient" in str(w.message)]
    return stuck, [r for r in read_stats(result.run, "train")]


def test_the_explosion_message_shows_the_loss_above_its_limit():
    """Three digits rounded 1.6000001 to the limit itself: 'g_loss=1.6 above ... = 1.6'."""
    from gankit.config import TrainConfig
    from gankit.train.recovery import Recovery

    check = Recovery(TrainConfig(loss_explosion_above=1.6)).check
    assert check({"g_loss": 1.6000001}, {}).startswith("g_loss=1.6000001 above")
    assert check({"g_loss": 2.345678}, {}).startswith("g_loss=2.35 above")


def test_a_quoted_error_that_opens_with_a_heading_keeps_its_first_item():
    """'Error(s) in loading state_dict for G:' alone named no key: the refused resume's message lost why."""
    from gankit.errors import first_line

    try:
        torch.nn.Linear(2, 3).load_state_dict({"weight": torch.zeros(4, 2)})
    except RuntimeError as exc:
        said = first_line(exc)
        assert said.startswith('Error(s) in loading state_dict for Linear: Missing key(s) in state_dict: "bias"')
    assert first_line(ValueError("one line\nand more")) == "one line"


def test_a_run_stuck_beyond_the_keras_clip_is_told_once(monkeypatch, tmp_path):
    """Every logit beyond the clip: no gradient for either net, and nothing changes (seed 001's dead end)."""
    stuck, records = _stuck_warnings(monkeypatch, tmp_path / "dead", bias=-100.0)
    assert len(stuck) == 1 and stuck[0].startswith("step 2: every logit D gave")
    assert "train.seed" in stuck[0] and "loss.clip_eps=0" in stuck[0]
    assert all(r["d_clipped"] == 1.0 and r["g_clipped"] == 1.0 for r in records)
    # D's output bias did not move: the clip passed no gradient
    weights, _ = load_checkpoint(latest_good_checkpoint(RunDir(tmp_path / "dead" / "run")))
    [bias] = [v for k, v in weights.items() if k.startswith("D.") and k.endswith(".bias") and v.numel() == 1]
    assert bias.item() == -100.0


def test_a_learning_run_with_the_keras_clip_is_not_told(monkeypatch, tmp_path):
    stuck, records = _stuck_warnings(monkeypatch, tmp_path, bias=None)
    assert stuck == []
    assert all(0.0 <= r["d_clipped"] < 1.0 for r in records)


@pytest.mark.parametrize("override, message", [
    ("train.divergence_retries=-1", "divergence_retries must be >= 0"),
    ("train.divergence_lr_factor=1.5", r"divergence_lr_factor must be in \(0, 1\)"),
    ("train.loss_explosion_above=0", "loss_explosion_above must be positive"),
    ("train.divergence_retires=2", "did you mean 'divergence_retries'"),
])
def test_recovery_settings_are_validated(override, message):
    from gankit import config as C

    with pytest.raises(GankitError, match=message):
        C.build("seed002-mlp-mnist", overrides=[override])


# ---- a full disk during a checkpoint write -------------------------------------------------------------------


def _disk_fills_midway(monkeypatch, *, after_bytes_of_call: int = 2):
    """save_file writes half of the ``after_bytes_of_call``-th file, then fails with ENOSPC."""
    import gankit.run

    calls = []

    def save_file(tensors, path, metadata=None):
        calls.append(path)
        data = safetensors_bytes(tensors)
        with open(path, "wb") as fh:
            if len(calls) == after_bytes_of_call:
                fh.write(data[: len(data) // 2])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
            fh.write(data)

    monkeypatch.setattr(gankit.run, "save_file", save_file)


def test_full_disk_keeps_previous_checkpoint(monkeypatch, tmp_path):
    train(_cfg(), tmp_path / "run", progress=False)
    run = RunDir(tmp_path / "run")
    before = {p.name: file_digest(p) for p in (run.checkpoints / "step-00000006").iterdir()}
    _disk_fills_midway(monkeypatch)
    with pytest.raises(GankitError, match=r"step-00000009.*the disk is full.*previous checkpoint step-00000006 is "
                                          r"intact.*--resume"):
        train(_cfg(steps=9), run.path, resume=True, progress=False)
    assert {p.name: file_digest(p) for p in (run.checkpoints / "step-00000006").iterdir()} == before
    assert sorted(p.name for p in run.checkpoints.iterdir() if p.name.startswith(".")) == []  # partial removed
    assert latest_good_checkpoint(run).name == "step-00000006"
    assert (run.checkpoints / "latest").read_text() == "step-00000006"
    monkeypatch.undo()  # space freed: the run goes on from the intact checkpoint
    assert train(_cfg(steps=9), run.path, resume=True, progress=False).step == 9


def test_full_disk_elsewhere_is_a_clear_cli_error(monkeypatch, tmp_path):
    """ENOSPC while appending stats: `gankit train` says the disk is full (exit 2), no traceback."""
    from click.testing import CliRunner

    import gankit.train.loop
    from gankit.cli import main
    from tests.helpers import tiny_overrides

    def full(run, record):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(run.stats_path))

    monkeypatch.setattr(gankit.train.loop, "append_stats", full)
    sets = [a for o in [*tiny_overrides(6), "model.g.hidden=[8]", "model.d.hidden=[8]", "train.threads=1"]
            for a in ("--set", o)]
    r = CliRunner().invoke(main, ["train", "--preset", "seed002-mlp-mnist", "--set", "data.dataset=mnist-demo", *sets,
                                  "--out", str(tmp_path / "run"), "--no-progress"])
    assert r.exit_code == 2 and "the disk is full (writing" in r.output and "stats.jsonl" in r.output
    assert "Traceback" not in r.output
    assert latest_good_checkpoint(RunDir(tmp_path / "run")).name == "step-00000000"


def test_full_disk_while_replacing_best_keeps_the_old_best(monkeypatch, tmp_path):
    run = RunDir(tmp_path / "run")
    run.checkpoints.mkdir(parents=True)
    save_checkpoint(run, step=1, weights={"w": torch.ones(3)}, state={"x": 1}, keep=3, name="best")
    _disk_fills_midway(monkeypatch, after_bytes_of_call=1)
    with pytest.raises(GankitError, match="the disk is full"):
        save_checkpoint(run, step=2, weights={"w": torch.zeros(3)}, state={"x": 2}, keep=3, name="best")
    weights, state = load_checkpoint(run.checkpoints / "best")
    assert state["step"] == 1 and torch.equal(weights["w"], torch.ones(3))
    assert sorted(p.name for p in run.checkpoints.iterdir()) == ["best"]


# ---- partial and damaged checkpoints -------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["no manifest", "truncated weights", "missing state", "half-written folder"])
def test_partial_checkpoint_is_detected_on_resume(damage, tmp_path):
    cfg = _cfg(extra=["train.keep_checkpoints=5"])
    train(cfg, tmp_path / "run", progress=False)
    run = RunDir(tmp_path / "run")
    newest = run.checkpoints / "step-00000006"
    if damage == "no manifest":
        (newest / "manifest.json").unlink()
    elif damage == "truncated weights":
        w = newest / "weights.safetensors"
        w.write_bytes(w.read_bytes()[:100])
    elif damage == "missing state":
        (newest / "state.safetensors").unlink()
    else:  # a kill inside the write: the temporary folder is all there is of step 6 (and of a step 7)
        os.replace(newest, run.checkpoints / ".step-00000006.tmp")
        (run.checkpoints / ".step-00000006.tmp" / "manifest.json").unlink()
        __import__("shutil").copytree(run.checkpoints / ".step-00000006.tmp", run.checkpoints / ".step-00000007.tmp")
    if damage == "half-written folder":
        assert latest_good_checkpoint(run).name == "step-00000003"
    else:
        with pytest.warns(UserWarning, match="step-00000006.*using the previous good checkpoint step-00000003"):
            assert latest_good_checkpoint(run).name == "step-00000003"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert train(cfg, run.path, resume=True, progress=False).step == 6
    assert not any(p.name.endswith(".tmp") for p in run.checkpoints.iterdir())
    assert [r["step"] for r in read_stats(run) if "kind" not in r] == [2, 4, 6]  # redone, not doubled


def test_kill_while_replacing_best_keeps_the_old_best(tmp_path):
    """`best` is moved aside before its replacement is renamed in; a kill in between must not lose it."""
    run = RunDir(tmp_path / "run")
    run.checkpoints.mkdir(parents=True)
    save_checkpoint(run, step=1, weights={"w": torch.ones(3)}, state={}, keep=3, name="best")
    os.replace(run.checkpoints / "best", run.checkpoints / ".best.old.tmp")  # the moment of the kill
    (run.checkpoints / ".best.tmp").mkdir()  # with its replacement half-written
    from gankit.run import open_run

    open_run(run.path)
    assert sorted(p.name for p in run.checkpoints.iterdir()) == ["best"]
    assert load_checkpoint(run.checkpoints / "best")[1]["step"] == 1


def test_stale_latest_pointer_does_not_lose_the_newest_checkpoint(tmp_path):
    """A kill between renaming a checkpoint into place and updating `latest`: the complete one is used."""
    cfg = _cfg(extra=["train.keep_checkpoints=5"])
    train(cfg, tmp_path / "run", progress=False)
    run = RunDir(tmp_path / "run")
    (run.checkpoints / "latest").write_text("step-00000003")
    assert latest_good_checkpoint(run).name == "step-00000006"


def test_resume_before_the_first_checkpoint_starts_afresh(tmp_path):
    cfg = _cfg()
    train(cfg, tmp_path / "run", progress=False)
    run = RunDir(tmp_path / "run")
    for p in run.checkpoints.iterdir():  # as if killed before any checkpoint was written
        p.unlink() if p.is_file() else __import__("shutil").rmtree(p)
    with pytest.warns(UserWarning, match="no complete checkpoint yet; starting from step 0"):
        assert train(cfg, run.path, resume=True, progress=False).step == 6
    assert [r["step"] for r in read_stats(run) if "kind" not in r] == [2, 4, 6]


# ---- no code runs from a file ---------------------------------------------------------------------------------


class _Payload:
    """Unpickling this runs ``touch marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _plant(ckpt, name, blob):
    """Replace a checkpoint file and fix its manifest, so only the file's format stands in the way."""
    (ckpt / name).write_bytes(blob)
    manifest = json.loads((ckpt / "manifest.json").read_text())
    manifest[name] = file_digest(ckpt / name)
    (ckpt / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("kind", ["pickle as weights", "torch.save as weights", "torch.save as state tensors",
                                  "pickle as state.json"])
def test_crafted_pickle_in_a_checkpoint_is_refused(kind, tmp_path):
    train(_cfg(), tmp_path / "run", progress=False)
    run = RunDir(tmp_path / "run")
    ckpt = latest_good_checkpoint(run)
    marker = tmp_path / "pwned"
    if kind == "pickle as weights":
        _plant(ckpt, "weights.safetensors", pickle.dumps({"G.w": _Payload(marker)}))
    elif kind == "torch.save as weights":
        torch.save({"G.w": _Payload(marker)}, ckpt / "x.pt")
        _plant(ckpt, "weights.safetensors", (ckpt / "x.pt").read_bytes())
    elif kind == "torch.save as state tensors":
        torch.save({"s": _Payload(marker)}, ckpt / "x.pt")
        _plant(ckpt, "state.safetensors", (ckpt / "x.pt").read_bytes())
    else:
        _plant(ckpt, "state.json", pickle.dumps(_Payload(marker)))
    with pytest.raises(GankitError, match="unreadable checkpoint"):
        load_checkpoint(ckpt)
    with pytest.raises(GankitError, match="unreadable checkpoint"):
        load_generator(run.path)
    with pytest.raises(GankitError, match="unreadable checkpoint"):
        train(_cfg(steps=9), run.path, resume=True, progress=False)
    assert not marker.exists()
    from click.testing import CliRunner

    from gankit.cli import main

    r = CliRunner().invoke(main, ["sample", str(run.path), "--n", "4", "--out", str(tmp_path / "g.png")])
    assert r.exit_code == 2 and "unreadable checkpoint" in r.output and "Traceback" not in r.output
    assert not marker.exists()


def test_crafted_cifar_archive_cannot_run_code(tmp_path):
    """The same payload as a data_batch_1 inside the official archive's layout."""
    import io
    import tarfile

    from gankit.data import load_dataset

    marker = tmp_path / "pwned"
    evil = pickle.dumps({b"data": _Payload(marker), b"labels": [0]}, protocol=2)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]:
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(evil)
            tar.addfile(info, io.BytesIO(evil))
    (tmp_path / "cifar10").mkdir()
    (tmp_path / "cifar10" / "cifar-10-python.tar.gz").write_bytes(buf.getvalue())
    with pytest.raises(GankitError, match=r"data_batch_1.*refused, nothing in it ran.*posix.system"):
        load_dataset("cifar10", root=tmp_path, verify=False)
    assert not marker.exists()


# ---- the kill test (short form; benchmarks/kill_soak.py is the long one) ---------------------------------------


def test_sigkill_during_training_and_checkpoint_writes(tmp_path):
    """SIGKILL while training and inside a checkpoint write, resume each time: the run directory always
    loads, at most one checkpoint interval is lost, and the final weights equal an uninterrupted run's."""
    from benchmarks.kill_soak import soak

    rep = soak(tmp_path / "run", kills=2, seed=1, steps=30, checkpoint_every=5, pause=0.2,
               modes=("mid-write", "train"), reference=tmp_path / "ref", fork=True, log=lambda *_: None)
    assert [k.mode for k in rep.kills] == ["mid-write", "train"]
    assert rep.kills[0].mid_write_seen  # the kill landed inside a checkpoint write
    assert all(k.loadable for k in rep.kills)
    assert all(0 <= k.lost <= 5 for k in rep.kills), rep.kills
    assert rep.finished and rep.weights_equal and rep.losses_equal and rep.leftovers == []


# ---- resuming with other settings, damaged runs, two trainers, foreign folders ---------------------------------


def test_resume_with_settings_that_do_not_fit_is_refused_and_changes_nothing(tmp_path):
    """A changed net or optimizer: a clear error, and the run's config.toml and stats stay as they were
    (the config used to be rewritten first, which broke every later resume and sample of the run)."""
    run = RunDir(tmp_path / "run")
    train(_cfg(), run.path, progress=False)
    before = {p: p.read_bytes() for p in (run.config_path, run.stats_path)}
    for change in ("model.g.hidden=[16]", "optim.g.name='adam'"):
        with pytest.raises(GankitError, match="does not fit this config"):
            train(_cfg(extra=[change], steps=9), run.path, resume=True, progress=False)
        assert {p: p.read_bytes() for p in before} == before
    assert load_generator(run.path).step == 6  # still samples
    with pytest.raises(GankitError, match="does not fit"):  # a checkpoint from another net, met by `sample`
        run.config_path.write_text(__import__("gankit.config", fromlist=["dumps"]).dumps(
            _cfg(extra=["model.g.hidden=[16]"])))
        load_generator(run.path)
    run.config_path.write_bytes(before[run.config_path])
    train(_cfg(extra=["optim.g.lr=0.005"], steps=9), run.path, resume=True, progress=False)
    assert run.config().optim.g.lr == 0.005  # a change that loads is recorded


def test_a_resume_that_fails_before_its_first_checkpoint_leaves_the_runs_config(tmp_path):
    """The changed config is written with the first checkpoint it makes: settings that stop the run in its
    first steps (here a loss limit every step breaks) do not become the run's, so a plain resume works."""
    run = RunDir(tmp_path / "run")
    train(_cfg(), run.path, progress=False)
    before = run.config_path.read_bytes()
    with pytest.raises(GankitError, match="loss_explosion_above"):
        train(_cfg(extra=["train.loss_explosion_above=1e-6", "train.divergence_retries=0"], steps=9), run.path,
              resume=True, progress=False)
    assert run.config_path.read_bytes() == before
    assert train(_cfg(steps=9), run.path, resume=True, progress=False).step == 9


@pytest.mark.parametrize("batch", ["data.batch_size=1", "train.g_batch_size=1"])
def test_batch_norm_with_a_batch_of_one_is_refused_before_the_run_is_touched(batch, tmp_path):
    """Seed 002's G has batch norm, which cannot train on one image: refused up front, for a resume (the
    run's config.toml unchanged) and for a --force restart (the old run not deleted)."""
    run = RunDir(tmp_path / "run")
    train(_cfg(), run.path, progress=False)
    files = sorted(p.relative_to(run.path) for p in run.path.rglob("*"))
    before = run.config_path.read_bytes()
    with pytest.raises(GankitError, match="G's batch norm net.2 has one value per channel and image, so it needs "
                                          "at least 2 images a batch"):
        train(_cfg(extra=[batch], steps=9), run.path, resume=True, progress=False)
    with pytest.raises(GankitError, match="G's batch norm"):
        train(_cfg(extra=[batch]), run.path, force=True, progress=False)
    assert run.config_path.read_bytes() == before
    assert sorted(p.relative_to(run.path) for p in run.path.rglob("*")) == files


@pytest.mark.parametrize("change, what", [
    ("schedule.name='thresholds'", "the schedule"),  # it ended in KeyError: 'phase'
    ("train.seed=5", "random streams"),  # recorded, but only the grid's noise changed, mid-run
    ("data.sampler='sequential'", "sampler continues"),  # recorded, and the saved shuffled order went on
])
def test_a_resume_that_changes_what_the_checkpoint_decides_is_refused(change, what, tmp_path):
    run = RunDir(tmp_path / "run")
    train(_cfg(), run.path, progress=False)
    before = run.config_path.read_bytes()
    with pytest.raises(GankitError, match=f"cannot change on --resume .*{what}"):
        train(_cfg(extra=[change], steps=9), run.path, resume=True, progress=False)
    assert run.config_path.read_bytes() == before


def test_a_resume_with_nothing_left_to_train_changes_nothing(tmp_path, capsys):
    run = RunDir(tmp_path / "run")
    train(_cfg(), run.path, progress=False)
    before = run.config_path.read_bytes()
    result = train(_cfg(extra=["optim.g.lr=0.005"], steps=2), run.path, resume=True, progress=False)
    assert result.step == 6 and "already at step 6 of 2" in capsys.readouterr().out
    assert run.config_path.read_bytes() == before  # the run's config still says what it ran with


def test_resume_with_every_checkpoint_damaged_is_refused(tmp_path):
    run = RunDir(tmp_path / "run")
    train(_cfg(), run.path, progress=False)
    stats = run.stats_path.read_bytes()
    for ckpt in run.checkpoints.glob("step-*"):
        (ckpt / "manifest.json").write_text("{")
    with pytest.warns(UserWarning), pytest.raises(GankitError, match="every checkpoint is damaged"):
        train(_cfg(steps=9), run.path, resume=True, progress=False)
    assert run.stats_path.read_bytes() == stats and len(list(run.checkpoints.glob("step-*"))) == 3


def test_damaged_newer_checkpoints_are_set_aside_not_kept_by_the_rotation(tmp_path):
    """Resuming from step 3 past a damaged step 6 with keep_checkpoints=1: the rotation keeps the newest by
    step, so the damaged 6 used to outrank (and delete) every good checkpoint the resumed run wrote."""
    run = RunDir(tmp_path / "run")
    cfg = _cfg(extra=["train.keep_checkpoints=2"], steps=6)
    train(cfg, run.path, progress=False)
    (run.checkpoints / "step-00000006" / "manifest.json").write_text("{")
    with pytest.warns(UserWarning, match="moved the damaged checkpoints step-00000006 aside"):
        train(_cfg(extra=["train.keep_checkpoints=1"], steps=5), run.path, resume=True, progress=False)
    names = sorted(p.name for p in run.checkpoints.iterdir() if p.is_dir())
    assert names == ["damaged-step-00000006", "step-00000005"]
    assert latest_good_checkpoint(run).name == "step-00000005"


def test_checkpoints_are_ordered_by_step_not_by_name(tmp_path):
    from gankit.run import list_checkpoints

    run = RunDir(tmp_path / "run")
    for step in (99_999_999, 100_000_000):
        save_checkpoint(run, step=step, weights={"w": torch.ones(1)}, state={}, keep=1)
    assert [p.name for p in list_checkpoints(run)] == ["step-100000000"]


def test_the_best_checkpoint_outranks_an_older_record_on_restore(tmp_path):
    """After a rollback (or a resume) to a checkpoint older than `best`, `best` keeps its own record, so a
    worse evaluation cannot replace the better generator it holds."""
    from gankit.run import best_so_far

    run = RunDir(tmp_path / "run")
    save_checkpoint(run, step=4, weights={"w": torch.ones(1)}, keep=3, name="best",
                    state={"best": {"step": 4, "metric": "dfid", "value": 1.5}})
    assert best_so_far(run, {})["step"] == 4
    assert best_so_far(run, {"step": 2, "metric": "dfid", "value": 2.0})["value"] == 1.5
    assert best_so_far(run, {"step": 8, "metric": "dfid", "value": 1.0})["value"] == 1.0
    assert best_so_far(RunDir(tmp_path / "none"), {"value": 3.0}) == {"value": 3.0}


def test_logged_losses_are_exact_across_a_resume_between_log_steps(tmp_path):
    """Checkpoints at 3, logs at 2, 4, 6: the step-4 line averages steps 3 and 4 in a resumed run too."""
    straight = RunDir(tmp_path / "straight")
    train(_cfg(), straight.path, progress=False)
    resumed = RunDir(tmp_path / "resumed")
    train(_cfg(), resumed.path, progress=False)
    __import__("shutil").rmtree(resumed.checkpoints / "step-00000006")
    train(_cfg(), resumed.path, resume=True, progress=False)
    logs = [[r for r in read_stats(run, "train") if r["step"] == 4][0] for run in (straight, resumed)]
    assert logs[0]["d_loss"] == logs[1]["d_loss"] and logs[0]["g_loss"] == logs[1]["g_loss"]


def test_a_second_trainer_on_a_run_is_refused(tmp_path):
    import fcntl

    from gankit.run import LOCK_NAME

    run = RunDir(tmp_path / "run")
    train(_cfg(), run.path, progress=False)
    fd = os.open(run.path / LOCK_NAME, os.O_RDWR)  # as another process training it would hold it
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        with pytest.raises(GankitError, match="another gankit process is training this run"):
            train(_cfg(steps=9), run.path, resume=True, progress=False)
        with pytest.raises(GankitError, match="another gankit process"):
            train(_cfg(), run.path, force=True, progress=False)
    finally:
        os.close(fd)
    assert len(list(run.checkpoints.glob("step-*"))) == 3  # --force deleted nothing while it was in use
    assert train(_cfg(steps=9), run.path, resume=True, progress=False).step == 9  # released: free again


def test_force_deletes_only_runs_and_only_once_the_config_builds(tmp_path):
    from gankit.run import check_free

    other = tmp_path / "project"
    (other / "samples").mkdir(parents=True)
    (other / "samples" / "holiday.jpg").write_bytes(b"jpeg")
    (other / "config.toml").write_text("[tool.something]\nx = 1\n")
    for force in (False, True):
        with pytest.raises(GankitError, match="not a gankit run"):
            check_free(other, force=force)
    assert (other / "samples" / "holiday.jpg").exists()
    run = RunDir(tmp_path / "run")
    train(_cfg(), run.path, progress=False)
    (run.path / "tensorboard").mkdir()
    with pytest.raises(GankitError, match="unknown setting"):  # a bad setting: the old run is still there
        train(_cfg(extra=["model.g.foo=3"]), run.path, force=True, progress=False)
    assert len(list(run.checkpoints.glob("step-*"))) == 3
    train(_cfg(steps=3), run.path, force=True, progress=False)
    assert not (run.path / "tensorboard").exists()
    assert sorted(p.name for p in run.checkpoints.glob("step-*")) == ["step-00000000", "step-00000003"]


def test_a_setting_that_fails_late_in_setup_leaves_a_forced_run_intact(tmp_path):
    """Evaluation during training on a dataset without an evaluator fails in setup, after the nets build:
    the run directory is made (and --force's deleting done) only after all of setup."""
    from PIL import Image

    pics = tmp_path / "pics"
    pics.mkdir()
    for i in range(8):
        Image.new("L", (28, 28), 30 * i).save(pics / f"{i}.png")
    run = RunDir(tmp_path / "run")
    train(_cfg(), run.path, progress=False)
    before = sorted(p.name for p in run.checkpoints.iterdir())
    with pytest.raises(GankitError, match="no domain evaluator"):
        train(_cfg(extra=[f"data.dataset='folder:{pics}'", "train.eval_every=2"]), run.path, force=True,
              progress=False)
    assert sorted(p.name for p in run.checkpoints.iterdir()) == before
    fresh = tmp_path / "fresh"
    with pytest.raises(GankitError, match="no domain evaluator"):
        train(_cfg(extra=[f"data.dataset='folder:{pics}'", "train.eval_every=2"]), fresh, progress=False)
    assert not (fresh / "config.toml").exists()  # the corrected command is not told "already holds a run"


def test_an_interrupted_force_leaves_a_run_that_can_be_forced_again(monkeypatch, tmp_path):
    import shutil

    from gankit.run import check_free, create_run

    run = RunDir(tmp_path / "run")
    train(_cfg(), run.path, progress=False)
    real = shutil.rmtree

    def interrupted(p, *a, **k):
        if str(p).endswith("samples"):
            raise KeyboardInterrupt
        return real(p, *a, **k)

    monkeypatch.setattr(shutil, "rmtree", interrupted)
    with pytest.raises(KeyboardInterrupt):
        create_run(run.path, _cfg(), force=True)
    monkeypatch.setattr(shutil, "rmtree", real)
    assert run.config_path.exists() and check_free(run.path, force=True)  # deleted last: still a run


def test_a_filesystem_without_locks_trains_with_a_warning(monkeypatch, tmp_path):
    import errno
    import fcntl

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.warns(UserWarning, match="cannot lock the run directory"):
        assert train(_cfg(steps=2), tmp_path / "run", progress=False).step == 2


def test_a_nan_first_evaluation_is_logged_and_training_goes_on(monkeypatch, tmp_path):
    import math

    import gankit.evaluate

    monkeypatch.setattr(gankit.evaluate, "generator_dfid", lambda *a, **k: (lambda G: ("dfid", math.nan)))
    run = RunDir(tmp_path / "run")
    assert train(_cfg(extra=["train.eval_every=2"]), run.path, progress=True).step == 6  # the bar prints it
    evals = [r for r in read_stats(run) if r.get("kind") == "eval"]
    assert len(evals) == 3 and not (run.checkpoints / "best").exists()
