"""The ``gankit`` command: parse options, build a config, call one library function.

Every user error surfaces as one ``error: ...`` line (exit status 2), never a traceback.
"""

from __future__ import annotations

import errno
import math
import os
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, NoReturn

import click

from gankit.errors import GankitError, first_line


def _failed_rank() -> bool:
    """Whether this process is a torchrun rank whose command failed (see :func:`gankit.dist.broken`)."""
    dist = sys.modules.get("gankit.dist")  # loaded only by commands that can run as a rank
    return dist is not None and dist.broken()


def _rank_leaves(status: int) -> None:
    """A failed torchrun rank leaves here, at once, without the interpreter's teardown; others return."""
    if _failed_rank():
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except OSError:  # a reader that left (a pipe) must not keep the rank from leaving
                pass
        os._exit(status)


def _exit(status: int) -> NoReturn:
    """Leave with ``status`` (a failed torchrun rank with ``os._exit``, see :func:`_rank_leaves`)."""
    _rank_leaves(status)
    sys.exit(status)


def _bug_in_a_rank() -> None:
    """A bug (not a user error) in a failed torchrun rank: print its traceback and leave at once."""
    if _failed_rank():
        traceback.print_exc()
        _rank_leaves(1)


class _Group(click.Group):
    """Turns GankitError into a clear message and exit status 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GankitError as exc:
            click.echo(f"error: {exc}", err=True)
            _exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            _exit(130)
        except OSError as exc:  # a full disk, a folder that cannot be written: the user's to fix, not a bug
            if exc.errno == errno.EPIPE:  # `gankit presets | head`: the reader left; nothing to report
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                _exit(141)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                click.echo(f"error: the disk is full (writing {exc.filename or 'a file'}); free some space. A "
                           "run's checkpoints are written whole or not at all: `gankit train --resume RUN` "
                           "continues it", err=True)
            else:
                where = f"{exc.filename}: " if exc.filename else ""
                click.echo(f"error: {where}{exc.strerror or exc}", err=True)
            _exit(2)
        except MemoryError:
            click.echo("error: out of memory; ask for fewer images or a smaller batch", err=True)
            _exit(2)
        except RuntimeError as exc:  # PyTorch's allocator reports a too-large request as a RuntimeError
            if "can't allocate memory" not in str(exc) and "out of memory" not in str(exc):
                _bug_in_a_rank()
                raise
            click.echo(f"error: out of memory ({first_line(exc, 160)}); ask for fewer images or a smaller batch",
                       err=True)
            _exit(2)
        except Exception:
            _bug_in_a_rank()
            raise
        except SystemExit as exc:  # sys.exit inside a command: a failed rank still leaves without the teardown
            if isinstance(exc.code, str):
                click.echo(exc.code, err=True)
            _rank_leaves(0 if exc.code is None else exc.code if isinstance(exc.code, int) else 1)
            raise


def _warning(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    click.echo(f"warning: {message}", err=True)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gankit")
def main() -> None:
    """gankit: train, watch, evaluate and sample GANs on image data."""
    warnings.showwarning = _warning


# ---- train -----------------------------------------------------------------------------------------------

@main.command()
@click.option("--preset", "-p", help="a named recipe (see `gankit presets`)")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="a TOML config file instead of a preset")
@click.option("--steps", type=int, help="training steps (train.steps)")
@click.option("--out", "-o", type=click.Path(file_okay=False),
              help="run directory (default runs/NAME-TIME, NAME the config's name: the preset's, unless set)")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="override a setting, e.g. data.batch_size=64")
@click.option("--resume", type=click.Path(file_okay=False), help="continue the run in this directory")
@click.option("--force", is_flag=True, help="start over in an --out directory that already holds a run")
@click.option("--data-root", type=click.Path(file_okay=False), help="folder holding the dataset folders")
@click.option("--dry-run", is_flag=True, help="print the resolved config and both nets' layer tables, then exit")
@click.option("--no-progress", is_flag=True, help="no progress bar")
def train(preset: str | None, config_file: str | None, steps: int | None, out: str | None, overrides: tuple[str, ...],
          resume: str | None, force: bool, data_root: str | None, dry_run: bool, no_progress: bool) -> None:
    """Train a GAN from a preset or config file into a run directory."""
    from gankit import config as C

    sets = list(overrides) + ([f"train.steps={steps}"] if steps is not None else [])
    for flag, value in (("--out", out), ("--resume", resume)):
        if value is not None and not value.strip():  # "" would be the current folder
            raise GankitError(f"{flag} is empty; give a run directory")
    if resume:
        if preset or config_file or out:
            raise GankitError("--resume continues a run with its own config: drop --preset/--config/--out")
        run_cfg = Path(resume) / "config.toml"
        if not run_cfg.exists():
            raise GankitError(f"{resume} is not a gankit run directory (no config.toml)")
        # (the run's config.toml is rewritten by the trainer with the first checkpoint the changed config
        # makes: a setting that does not fit the run leaves it as it was)
        cfg = C.build(overrides=sets, file=run_cfg, run_config=True)
        out = resume
    else:
        cfg = C.build(preset, overrides=sets, file=config_file)
        if config_file and out and Path(config_file).resolve() == (Path(out) / "config.toml").resolve():
            raise GankitError(f"--config {config_file} is the file a run in --out {out} would write (its config.toml);"
                              " keep the config outside the run directory, or choose another --out")
    if dry_run:
        _print_dry_run(cfg)
        return
    from gankit import dist
    from gankit.train.loop import train as run_training

    with dist.session(cfg.train.device):  # one rank of a torchrun job, or just this process
        if out is None:
            out = dist.from_main(str(Path("runs") / f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"))
        result = run_training(cfg, out, resume=bool(resume), force=force, data_root=data_root,
                              progress=not no_progress)
        if not dist.is_main():
            return
    last = ", ".join(f"{k}={v:.3f}" for k, v in result.last.items())
    click.echo(f"run: {result.run.path}  step {result.step}  images seen {result.images_seen:,}  {last}")
    if result.stopped_by:
        click.echo(f"stopped by {result.stopped_by} at step {result.step} of {cfg.train.steps}, checkpoint saved; "
                   f"continue with: gankit train --resume {result.run.path}")
    click.echo(f"sample it: gankit sample {result.run.path} --n 64 --out grid.png")
    if result.stopped_by in ("SIGINT", "SIGTERM"):
        import signal

        sys.exit(128 + int(getattr(signal, result.stopped_by)))


def _print_dry_run(cfg: Any) -> None:
    import torch

    from gankit import config as C
    from gankit.data import describe, parse_spec, resolve_classes
    from gankit.nets import layer_table
    from gankit.train.build import check_setup, make_nets, sample_noise

    info = describe(cfg.data.dataset, resolution=cfg.data.resolution, channels=cfg.data.channels)
    name, args = parse_spec(cfg.data.dataset)
    classes: Any = None  # the labels the training images hold; None: unknown without reading a folder
    if info is None or (name == "folder" and cfg.model.conditional):  # a folder: read it to know
        from gankit.train.build import load_training_data

        data = load_training_data(cfg.data)
        info, classes = data.info, data.labels.unique().tolist()
    elif name != "folder":  # (a class filter keeps the dataset's class list)
        classes = resolve_classes(args, info.class_names, dataset=info.name) if args else range(info.num_classes)
    G, D = make_nets(cfg, info)  # first: a net setting it refuses (a misspelt key) prints no config
    # what training would refuse before its first step (as one process: torchrun splits the batch further)
    check_setup(cfg, info, G, D, batch=cfg.data.batch_size, g_batch=cfg.train.g_batch_size or cfg.data.batch_size,
                classes=None if classes is None else sorted(set(classes)))
    click.echo(C.dumps(cfg))
    n = 2 * cfg.model.pack  # a packed D (PacGAN) judges groups of model.pack images
    z = sample_noise(n, cfg.model, device=torch.device("cpu"))
    y = torch.zeros(n, dtype=torch.long) if cfg.model.conditional else None
    g_table, g_total, _ = layer_table(G, z, y)
    x = torch.zeros(n, info.channels, info.resolution, info.resolution)
    d_table, d_total, _ = layer_table(D, x, y)
    click.echo(f"# generator ({cfg.model.g.arch}): {g_total:,} params\n{g_table}\n")
    click.echo(f"# discriminator ({cfg.model.d.arch}): {d_total:,} params\n{d_table}")


# ---- sample -------------------------------------------------------------------------------------------------

@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--n", "n", type=int, help="how many images  [default: 64; with --per-class, that many rows of classes]")
@click.option("--out", "-o", default="samples.png", show_default=True, help=".png/.jpg grid, or .npz arrays")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True)
@click.option("--class", "classes", multiple=True, help="class name or number (conditional runs; repeatable)")
@click.option("--per-class", type=int, help="conditional runs: a grid with one column per class, this many rows")
@click.option("--checkpoint", help="a checkpoint folder name (default: the latest good one)")
@click.option("--device", default="cpu", show_default=True)
@click.option("--no-ema", is_flag=True, help="sample the raw G of a run that keeps G_ema (model.ema)")
def sample(run_dir: str, n: int | None, out: str, seed: int, classes: tuple[str, ...], per_class: int | None,
           checkpoint: str | None, device: str, no_ema: bool) -> None:
    """Generate images from a trained run (conditional runs: --class, --per-class)."""
    import torch

    from gankit.sample import check_room, check_samples_out, class_indices, generate, load_generator, write_samples

    if per_class is not None and n is not None:
        raise GankitError(f"--per-class {per_class} makes {per_class} rows of one image per class; leave out --n")
    n = 64 if n is None else n
    check_samples_out(out)  # before any sample is made
    lg = load_generator(run_dir, device=device, checkpoint=checkpoint, ema=not no_ema)
    labels, nrow = None, None
    if (classes or per_class) and not lg.cfg.model.conditional:
        raise GankitError("this run's generator is not conditional: --class and --per-class do not apply")
    idx = class_indices(list(classes), lg.info, lg.classes) if classes else list(lg.classes)
    if per_class is not None:
        if per_class <= 0:
            raise GankitError(f"--per-class must be positive, got {per_class}")
        check_room(lg, per_class * len(idx))
        labels = torch.tensor(idx).repeat(per_class)  # row by row: every class once per row
        n, nrow = len(labels), len(idx)
    elif classes:
        if 0 < n < len(idx):
            raise GankitError(f"--n {n} is fewer than the {len(idx)} classes asked for: some would get no image")
        labels = torch.tensor(idx).repeat_interleave(-(-n // len(idx)))[:n]
    images, labels, z = generate(lg, n, seed=seed, labels=labels)
    path = write_samples(out, images, labels, z, resolution=lg.info.resolution, nrow=nrow)
    click.echo(f"wrote {n} samples from {run_dir} (step {lg.step}, {lg.weights}) to {path}")


# ---- listings ---------------------------------------------------------------------------------------------------

@main.command()
def presets() -> None:
    """List the named presets with a one-line description each."""
    from gankit import config as C

    names = C.preset_names()
    width = max(map(len, names))
    for name in names:
        desc = C.preset_dict(name).get("description", "")
        click.echo(f"{name:<{width}}  {desc}")


@main.command("list")
@click.argument("kind", required=False)
def list_(kind: str | None) -> None:
    """List registered things: datasets, generators, discriminators, losses, schedules, augmentations."""
    import gankit.augment  # noqa: F401
    import gankit.data  # noqa: F401
    import gankit.losses  # noqa: F401
    import gankit.nets  # noqa: F401
    import gankit.train.schedule  # noqa: F401
    from gankit import registry
    from gankit.config import validate  # noqa: F401  (imports register everything)

    kinds = {"datasets": "dataset", "generators": "generator", "discriminators": "discriminator", "losses": "loss",
             "schedules": "schedule", "augments": "augment"}
    if kind and kind not in kinds:
        from gankit.errors import did_you_mean

        raise GankitError(f"unknown kind {kind!r}{did_you_mean(kind, kinds)}; choose from {', '.join(kinds)}")
    for plural, k in kinds.items():
        if kind in (None, plural):
            click.echo(f"{plural}: {', '.join(registry.names(k))}")


# ---- data --------------------------------------------------------------------------------------------------------

@main.group()
def data() -> None:
    """Datasets: list, check, show."""


@data.command("list")
@click.option("--data-root", type=click.Path(file_okay=False))
def data_list(data_root: str | None) -> None:
    """Dataset names, with their geometry and whether their files are present."""
    from gankit.data import dataset_names, describe, files_state
    from gankit.data.files import data_root as root_of

    root = root_of(data_root)
    where = "" if root.is_dir() else "  (not a folder)" if root.exists() else "  (no such folder)"
    click.echo(f"data root: {root}{where}")
    for name in dataset_names():
        info = describe(name)
        here = files_state(name, root)
        click.echo(f"  {name:<24} {info.resolution}x{info.resolution}x{info.channels}  "
                   f"{info.num_classes:>4} classes  [{here}]")
    click.echo("  folder:PATH              any folder or .zip/.tar(.gz) of images; subfolders are classes")


@data.command("check")
@click.argument("name")
@click.option("--split", default="train+test", show_default=True)
@click.option("--resolution", type=click.IntRange(4, 1024), help="folder datasets of mixed sizes: the side to load at")
@click.option("--data-root", type=click.Path(file_okay=False))
def data_check(name: str, split: str, resolution: int | None, data_root: str | None) -> None:
    """Verify a dataset's files and print its counts and class histogram."""
    from gankit.data import load_dataset

    t0 = time.perf_counter()
    ds = load_dataset(name, root=data_root, split=split, resolution=resolution)
    dt = time.perf_counter() - t0
    info = ds.info
    click.echo(f"{info.name} ({split}): {len(ds):,} images, {info.resolution}x{info.resolution}x{info.channels}, "
               f"{info.num_classes} classes, loaded and verified in {dt:.2f} s")
    for f in ds.files:
        click.echo(f"  file: {f}")
    for note in info.notes:
        click.echo(f"  note: {note}")
    counts = ds.class_counts()
    shown = [(i, c) for i, c in enumerate(counts) if c] if info.num_classes > 62 else list(enumerate(counts))
    top = max(counts) or 1
    for i, c in shown[:62]:
        click.echo(f"  {info.class_names[i]:>12} {c:>7,} {'#' * round(30 * c / top)}")
    if len(shown) > 62:
        click.echo(f"  ... {len(shown) - 62} more classes")
    click.echo("ok")


@data.command("show")
@click.argument("name")
@click.option("--out", "-o", default="data.png", show_default=True)
@click.option("--n", "n", type=int, default=64, show_default=True)
@click.option("--split", default="train", show_default=True)
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True)
@click.option("--resolution", type=click.IntRange(4, 1024), help="folder datasets of mixed sizes: the side to load at")
@click.option("--data-root", type=click.Path(file_okay=False))
def data_show(name: str, out: str, n: int, split: str, seed: int, resolution: int | None,
              data_root: str | None) -> None:
    """Write a grid of real images, each captioned with its class."""
    import torch

    from gankit.data import load_dataset
    from gankit.viz.grid import labelled_grid, save_image

    if n <= 0:
        raise GankitError(f"--n must be positive, got {n}")
    ds = load_dataset(name, root=data_root, split=split, resolution=resolution)
    idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:n]
    names = [ds.info.class_names[int(i)] for i in ds.labels[idx]]
    path = save_image(labelled_grid(ds.images[idx], names), out)
    click.echo(f"wrote {len(idx)} images of {ds.info.name} to {path}")


# ---- eval ----------------------------------------------------------------------------------------------------------

@main.command("eval")
@click.argument("run_dir", type=click.Path(file_okay=False), required=False)
@click.option("--metrics", default="dfid,kid,pr,classes", show_default=True,
              help="comma-separated: dfid, fid (Inception; slow on a CPU), kid, pr, dc, classes, cond-acc, modes")
@click.option("--n", "-n", "n", type=int, default=10_000, show_default=True,
              help="samples (and real images); under torchrun write -n (it reads --n as one of its own options)")
@click.option("--against", type=click.Choice(["train", "test"]), default="test", show_default=True)
@click.option("--real", "real_dataset", help="score a dataset's train split against its test split (the floor)")
@click.option("--checkpoint", help="a checkpoint folder name (default: the latest good one)")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True)
@click.option("--data-root", type=click.Path(file_okay=False))
@click.option("--no-ema", is_flag=True, help="evaluate the raw G of a run that keeps G_ema (model.ema)")
@click.option("--device", default="auto", show_default=True,
              help="where G samples and the Inception network runs: auto (a GPU when there is one), cpu, cuda[:N]")
@click.pass_context
def eval_(ctx: click.Context, run_dir: str | None, metrics: str, n: int, against: str, real_dataset: str | None,
          checkpoint: str | None, seed: int, data_root: str | None, no_ema: bool, device: str) -> None:
    """Quality metrics of a run's generator (a table, and JSON in RUN/eval/)."""
    from click.core import ParameterSource

    from gankit import dist
    from gankit.evaluate import evaluate_real, evaluate_run, format_table
    from gankit.metrics.evaluator import family_of

    names = tuple(m.strip() for m in metrics.split(",") if m.strip())
    if run_dir and not real_dataset and ctx.get_parameter_source("metrics") != ParameterSource.COMMANDLINE:
        # the default metrics need a domain evaluator; a run on a folder of images has none: its FID then
        from gankit.run import RunDir

        dataset = RunDir(run_dir).config().data.dataset  # (not a run: its own clear error)
        try:
            family_of(dataset)
        except GankitError:
            names = ("fid",)
            click.echo(f"{run_dir}: no domain evaluator for its dataset, so --metrics fid (the Inception FID)",
                       err=True)
    if not names:
        raise GankitError("--metrics names no metric; give some of dfid, fid, kid, pr, dc, classes, cond-acc, modes")
    if n <= 1:
        raise GankitError(f"--n must be at least 2, got {n}")
    if not (real_dataset or run_dir):
        raise GankitError("give a run directory, or --real DATASET for the real-vs-real floor")
    if real_dataset and run_dir:
        raise GankitError(f"give a run directory or --real DATASET, not both (--real scores {real_dataset}'s own "
                          f"train images, not {run_dir}'s generator)")
    from gankit.train.build import resolve_device

    resolve_device(device)  # a device this machine lacks fails before any work
    # under torchrun the ranks share sampling and feature extraction, each on its own GPU where there are GPUs;
    # what they exchange (features, samples) is small, so their group is gloo's, on the CPU
    with dist.session("cpu"):
        if real_dataset:
            result = evaluate_real(real_dataset, metrics=names, n=n, root=data_root, device=device)
        else:
            result = evaluate_run(run_dir, metrics=names, n=n, against=against, root=data_root, seed=seed,
                                  checkpoint=checkpoint, ema=not no_ema, device=device)
        if dist.is_main():
            click.echo(format_table(result))
            if result.get("note"):
                click.echo(f"note: {result['note']}")


# ---- evaluators ------------------------------------------------------------------------------------------------

@main.group()
def evaluator() -> None:
    """Domain evaluators: the classifiers whose features the quality metrics use."""


@evaluator.command("train")
@click.argument("name")
@click.option("--epochs", type=int, default=8, show_default=True)
@click.option("--width", type=int, default=32, show_default=True, help="channels of the first stage")
@click.option("--lr", type=float, default=2e-3, show_default=True)
@click.option("--weight-decay", type=float, default=5e-4, show_default=True, help="AdamW's decoupled decay")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True)
@click.option("--out", type=click.Path(file_okay=False), help="folder (default: the package's evaluators/)")
@click.option("--data-root", type=click.Path(file_okay=False))
def evaluator_train(name: str, epochs: int, width: int, lr: float, weight_decay: float, seed: int,
                    out: str | None, data_root: str | None) -> None:
    """Train the evaluator for a dataset family and save it with its test accuracy (a long job)."""
    from gankit.metrics.evaluator import train_evaluator

    for option, value, ok in (("--epochs", epochs, epochs >= 1), ("--width", width, width >= 1),
                              ("--lr", lr, math.isfinite(lr) and lr > 0),
                              ("--weight-decay", weight_decay, math.isfinite(weight_decay) and weight_decay >= 0)):
        if not ok:
            raise GankitError(f"{option} {value}: must be {'positive' if option != '--weight-decay' else '>= 0'}")
    meta = train_evaluator(name, root=data_root, epochs=epochs, width=width, lr=lr,
                           weight_decay=weight_decay, seed=seed,
                           out=Path(out) if out else None, log=click.echo)
    verdict = "meets" if meta["test_accuracy"] >= meta["target_accuracy"] else "is below"
    click.echo(f"{name}: test accuracy {meta['test_accuracy']:.4f} {verdict} the target {meta['target_accuracy']}; "
               f"saved in {meta['saved_to']}")


@evaluator.command("list")
def evaluator_list() -> None:
    """The evaluators and their recorded test accuracy."""
    import json

    from gankit.metrics.evaluator import FAMILIES, evaluator_dir

    for name in FAMILIES:
        meta_path = evaluator_dir() / f"{name}.json"
        if meta_path.exists():
            m = json.loads(meta_path.read_text())
            click.echo(f"{name:<16} test accuracy {m['test_accuracy']:.4f} (target {m['target_accuracy']}), "
                       f"{m['epochs']} epochs, width {m['width']}")
        else:
            click.echo(f"{name:<16} not trained: gankit evaluator train {name}")


# ---- watch and show (gankit/viz) ---------------------------------------------------------------------------

@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--out", "-o", help="picture (default RUN/judge/step-NNNNNNNN.png)")
@click.option("--n", "n", type=int, default=16, show_default=True, help="real images, and as many generated")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1),
              help="which real images and noise (default: the run's seed, as in training)")
@click.option("--checkpoint", help="a checkpoint folder name (default: the latest good one)")
@click.option("--data-root", type=click.Path(file_okay=False))
@click.option("--device", default="cpu", show_default=True)
def judge(run_dir: str, out: str | None, n: int, seed: int | None, checkpoint: str | None, data_root: str | None,
          device: str) -> None:
    """Real and generated images side by side, titled with D's probability that each is real."""
    from gankit.viz.judge import judge_run

    path = judge_run(run_dir, out=out, n=n, seed=seed, checkpoint=checkpoint, root=data_root, device=device)
    click.echo(f"wrote {path}")


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--out", "-o", help=".gif (default RUN/evolution.gif); the strip and the MP4 go beside it")
@click.option("--fps", type=float, default=5.0, show_default=True)
@click.option("--hold", type=float, default=2.0, show_default=True, help="seconds on the last frame")
@click.option("--mp4/--no-mp4", default=None, help="also an MP4 (default: when imageio-ffmpeg is installed)")
@click.option("--strip", type=int, default=8, show_default=True, help="snapshots in the evolution strip")
def animate(run_dir: str, out: str | None, fps: float, hold: float, mp4: bool | None, strip: int) -> None:
    """The fixed-noise grids saved during training as an animated GIF (+ MP4) and an evolution strip."""
    from gankit.viz.animate import animate_run

    if strip < 1:
        raise GankitError(f"--strip must be positive, got {strip}")
    for path in animate_run(run_dir, out=out, fps=fps, hold=hold, mp4=mp4, strip=strip):
        click.echo(f"wrote {path}")


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--from", "from_", help="conditional runs: the class to start from (name or number)")
@click.option("--to", help="conditional runs: the class to end at")
@click.option("--scale", "scale_class", help="conditional runs: scale this class's label input from 0 to --max-scale")
@click.option("--max-scale", type=float, default=2.25, show_default=True, help="the seed's n / 4 for n = 0..9")
@click.option("--latent", is_flag=True, help="any run: spherical paths between seeded noise vectors")
@click.option("--class", "classes", multiple=True, help="--latent on a conditional run: the rows' classes")
@click.option("--steps", type=int, default=10, show_default=True, help="images along each path")
@click.option("--rows", type=int, help="paths (different noise), default 10 (8 for --latent)")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True)
@click.option("--out", "-o", default="interpolation.png", show_default=True,
              help=".png grid (rows x steps), or .gif/.mp4 animating along the paths")
@click.option("--checkpoint", help="a checkpoint folder name (default: the latest good one)")
@click.option("--device", default="cpu", show_default=True)
@click.option("--no-ema", is_flag=True, help="use the raw G of a run that keeps G_ema (model.ema)")
def interpolate(run_dir: str, from_: str | None, to: str | None, scale_class: str | None, max_scale: float,
                latent: bool, classes: tuple[str, ...], steps: int, rows: int | None, seed: int, out: str,
                checkpoint: str | None, device: str, no_ema: bool) -> None:
    """Walk between classes (--from A --to B), scale one class (--scale C), or walk the latent space (--latent)."""
    from gankit.sample import class_indices, load_generator
    from gankit.viz import interpolate as I

    modes = sum([bool(from_ or to), bool(scale_class), latent])
    if modes != 1:
        raise GankitError("choose one: --from A --to B, --scale CLASS, or --latent")
    if (from_ is None) != (to is None):
        raise GankitError("--from and --to go together")
    if steps < 2 or (rows is not None and rows < 1):
        raise GankitError("--steps must be at least 2 and --rows positive")
    if Path(out).suffix.lower() not in (".png", ".jpg", ".jpeg", ".gif", ".mp4"):
        raise GankitError(f"--out {out}: use .png, .jpg, .gif or .mp4")  # before any image is made
    lg = load_generator(run_dir, device=device, checkpoint=checkpoint, ema=not no_ema)
    if from_ is not None:
        I._need_conditional(lg, "class interpolation")
        a, b = class_indices([from_, str(to)], lg.info, lg.classes)
        images = I.class_interpolation(lg, a, b, steps=steps, rows=rows or 10, seed=seed)
        what = f"{lg.info.class_names[a]} to {lg.info.class_names[b]}"
    elif scale_class is not None:
        I._need_conditional(lg, "class scaling")
        (c,) = class_indices([scale_class], lg.info, lg.classes)
        if not (math.isfinite(max_scale) and 0 < max_scale <= 1000):
            raise GankitError(f"--max-scale must be a positive number up to 1000, got {max_scale}")
        images = I.class_scaling(lg, c, steps=steps, top=max_scale, rows=rows or 10, seed=seed)
        what = f"class {lg.info.class_names[c]} scaled 0 to {max_scale:g}"
    else:
        idx = class_indices(list(classes), lg.info, lg.classes) if classes and lg.cfg.model.conditional else None
        if classes and not lg.cfg.model.conditional:
            raise GankitError("this run's generator is not conditional: --class does not apply")
        images = I.latent_interpolation(lg, steps=steps, rows=rows or 8, seed=seed, classes=idx)
        what = "latent paths"
    path = I.write_table(images, out)
    click.echo(f"wrote {path}: {what}, {images.shape[0]} rows x {steps} steps (step {lg.step}, {lg.weights})")


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--time", "time_", default="12:34", show_default=True, help="HH:MM shown, then faded to the next minute")
@click.option("--minutes", type=int, default=1, show_default=True, help="minute changes to show")
@click.option("--count", help="instead of a clock: one digit counting A-B and back to A (the seed's loop: 0-9)")
@click.option("--out", "-o", default="clock.gif", show_default=True, help=".gif or .mp4")
@click.option("--fps", type=float, default=50.0, show_default=True, help="frames per second of the fades (GIF: <= 50)")
@click.option("--hold", type=float, default=1.0, show_default=True, help="seconds each settled display stays")
@click.option("--checkpoint", help="a checkpoint folder name (default: the latest good one)")
@click.option("--device", default="cpu", show_default=True)
@click.option("--no-ema", is_flag=True, help="use the raw G of a run that keeps G_ema (model.ema)")
@click.pass_context
def clock(ctx: click.Context, run_dir: str, time_: str, minutes: int, count: str | None, out: str, fps: float,
          hold: float, checkpoint: str | None, device: str, no_ema: bool) -> None:
    """Seed 003's digital clock: generated digits cross-fading to the next minute (conditional digit runs)."""
    from click.core import ParameterSource

    from gankit.sample import load_generator
    from gankit.viz.interpolate import check_clock_out, write_clock
    from gankit.viz.interpolate import clock as make_clock

    given = [f"--{p}" for p in ("time", "minutes")
             if ctx.get_parameter_source(p if p != "time" else "time_") == ParameterSource.COMMANDLINE]
    if count is not None and given:
        raise GankitError(f"--count shows one digit counting, not a clock: {' and '.join(given)} do not apply")
    check_clock_out(out, fps=fps, hold=hold)  # before any frame is made
    lg = load_generator(run_dir, device=device, checkpoint=checkpoint, ema=not no_ema)
    frames, settled = make_clock(lg, start=time_, count=count, minutes=minutes)
    path = write_clock(frames, settled, out, fps=fps, hold=hold)
    click.echo(f"wrote {path}: {len(frames)} frames (step {lg.step}, {lg.weights})")


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--out", "-o", help=".png (default RUN/curves.png)")
def plot(run_dir: str, out: str | None) -> None:
    """Learning curves: losses, D's accuracy and the metrics, against steps and images seen."""
    from gankit.viz.plots import plot_run

    click.echo(f"wrote {plot_run(run_dir, out=out)}")


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--out", "-o", help=".html (default RUN/report.html)")
@click.option("--refresh", type=int, help="seconds: the page reloads itself this often (for a run still training)")
@click.option("--judge/--no-judge", "judge_missing", default=True, show_default=True,
              help="make the judged grid from the latest checkpoint when the run wrote none")
@click.option("--data-root", type=click.Path(file_okay=False))
def report(run_dir: str, out: str | None, refresh: int | None, judge_missing: bool, data_root: str | None) -> None:
    """One self-contained HTML page about a run: config, curves, samples, evolution, D's verdicts, metrics."""
    from gankit.viz.report import write_report

    if refresh is not None and refresh <= 0:
        raise GankitError(f"--refresh must be positive, got {refresh}")
    path = write_report(run_dir, out=out, refresh=refresh, judge_missing=judge_missing, root=data_root)
    click.echo(f"wrote {path} (open it in a browser: file://{Path(path).resolve()})")


if __name__ == "__main__":
    main()
