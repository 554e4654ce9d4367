"""Typed, validated configuration: dataclasses <-> TOML, presets, and ``--set key=value`` overrides.

A config is built from plain dicts (a preset's TOML, a run's saved ``config.toml``), so a typo in
any of them gets the same clear error: the unknown key, where it was, and a "did you mean".
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from gankit.errors import GankitError, did_you_mean


@dataclass(kw_only=True)
class DataConfig:
    """What to train on and how batches are drawn."""

    dataset: str = "mnist"  # a name, "name:class,class" or "folder:PATH"
    split: str = "train"  # train | test | train+test
    root: str | None = None  # data root; default $GANKIT_DATA, else ~/.cache/gankit/data
    verify: bool = True  # check files against the official checksums (cached)
    resolution: int | None = None  # folder datasets: resize + centre-crop to this size
    channels: int | None = None  # folder datasets: 1 or 3 (default: inferred)
    limit: int | None = None  # keep only the first N images
    stacked_size: int | None = None  # stacked-mnist: number of stacks
    stacked_seed: int = 0
    batch_size: int = 64
    sampler: str = "shuffle"  # shuffle | random (with replacement) | sequential


@dataclass(kw_only=True)
class NetConfig:
    """One network: a registered architecture and its keyword arguments (any other keys)."""

    arch: str = "mlp"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class ModelConfig:
    """Both networks and what connects them."""

    latent_dim: int = 100
    noise: str = "normal"  # normal | uniform (in [-1, 1])
    output: str = "tanh"  # tanh: images in [-1, 1]; sigmoid: images in [0, 1]
    # The range real images are scaled to, [low, high]; unset: the output's range (above). Seed 004's
    # code as printed scales to [0, 1] under a tanh G, which is what [0, 1] with output = "tanh" repeats
    image_range: list[float] | None = None
    conditional: bool = False  # class labels into G and D
    # keras (glorot-uniform, zero bias) | dcgan (N(0, 0.02)) | tf-truncated (truncated normal,
    # std 2/sqrt(weights), seed 003) | torch (PyTorch defaults)
    init: str = "keras"
    g: NetConfig = field(default_factory=NetConfig)
    d: NetConfig = field(default_factory=NetConfig)
    sn: str = "none"  # spectral norm on every layer of: none | d | both (any arch; dcgan/resnet also take sn = true)
    ema: float = 0.0  # decay of G's weight average per G step (e.g. 0.999); 0 = no G_ema
    ema_start: int = 0  # G_ema copies G until this step, then averages
    # StyleGAN2-ADA's ramp-up: G_ema's half-life is at most ema_rampup x the steps so far (0.05: 5%),
    # so the average lengthens as the run goes on, up to model.ema's; 0 = a fixed decay
    ema_rampup: float = 0.0
    # PacGAN (Lin et al. 2018): D judges groups of `pack` images stacked on the channel axis, one logit
    # per group, so it can see a lack of variety; 1 = off. Unconditional models; batches must divide by it
    pack: int = 1
    # Self-conditioning (gankit.nets.selfcond): k-means splits the training images into this many
    # clusters by their pixels (no labels); G and D are conditional on the cluster, and G picks its
    # cluster from its noise, so the model stays unconditional to use; 0 = off. Unconditional models
    clusters: int = 0


@dataclass(kw_only=True)
class LossConfig:
    """The adversarial objective and how D's targets are made."""

    name: str = "bce"  # see `gankit list losses`
    real_label: float = 1.0  # target for real images (< 1: one-sided label smoothing)
    fake_label: float = 0.0
    label_noise: float = 0.0  # add label_noise * U[0, 1) to every target (seed 004)
    # Keras' binary cross-entropy clips D's probabilities to [eps, 1 - eps] (1e-7 in the Keras seeds):
    # logits beyond +-16.1 then get no gradient; 0 = the plain logit form
    clip_eps: float = 0.0
    # joint: one D step on the summed real and fake losses; concat: one D batch of real and fake images,
    # mean loss (Keras' np.concatenate); separate: a D step on the real batch, then one on the fake batch
    d_update: str = "joint"
    gp_weight: float = 0.0  # WGAN-GP: weight of the gradient penalty at real/fake interpolates (10 in the paper)
    r1_gamma: float = 0.0  # R1: gamma of the penalty gamma/2 * ||grad D(real)||^2 (0 = off)
    r1_every: int = 1  # lazy R1: apply it every k-th D update, scaled by k
    # AC-GAN (Odena et al. 2017), with a class head in D (model.d.classifier = true): D's loss adds
    # class_weight x the cross-entropy of its class head on the real batch; G's adds it on G's fakes
    # against the classes G was asked for
    class_weight: float = 1.0
    # Top-k training (Sinha et al. 2020): G's loss uses only the fraction of its fakes that D rates most
    # real, starting at all of them and shrinking by topk_gamma each epoch of real images down to topk
    # (their nu; 0.5-0.75 in the paper); 1 = off
    topk: float = 1.0
    topk_gamma: float = 0.99


@dataclass(kw_only=True)
class OptimConfig:
    """One optimizer. ``decay`` is Keras' time-based decay: lr / (1 + decay * iterations).

    ``linear_decay = [start, end]`` (this optimizer's steps) ramps the learning rate down linearly from
    ``lr`` at ``start`` to ``lr * lr_final`` at ``end`` and holds it there, as SNGAN and BigGAN end their
    runs; on a ``--resume`` the ramp can be set to begin at the step the run stopped at.
    """

    name: str = "adam"  # adam | sgd | rmsprop
    lr: float = 2e-4
    betas: list[float] = field(default_factory=lambda: [0.5, 0.999])
    momentum: float = 0.0
    alpha: float = 0.99  # rmsprop's rho
    eps: float = 1e-8
    weight_decay: float = 0.0
    clip_value: float | None = None  # clip each gradient element to [-v, v] (Keras clipvalue)
    decay: float = 0.0
    linear_decay: list[int] = field(default_factory=list)  # [start, end] steps; empty = off
    lr_final: float = 0.0  # the fraction of lr that linear_decay ends at


@dataclass(kw_only=True)
class OptimsConfig:
    g: OptimConfig = field(default_factory=OptimConfig)
    d: OptimConfig = field(default_factory=OptimConfig)


@dataclass(kw_only=True)
class ScheduleConfig:
    """Who trains when: a registered schedule and its parameters."""

    name: str = "alternate"
    d_steps: int = 1  # alternate: D updates per G update (n-critic)
    g_steps: int = 1
    g_target: float = 0.2  # thresholds: train G until it fools D on the validation batch this often ...
    d_target: float = 0.5  # ... then D until it is right this often (seed 000)
    val_size: int = 32  # thresholds: validation batch (fixed noise; half as many held-out real images)
    max_phase_steps: int = 1000  # thresholds: a phase ends after this many batches even short of its target
    every: int = 100  # pause-winner: how often the error is measured (seed 003)
    g_below: float = 0.8  # pause-winner: G trains while the error is below this ...
    d_above: float = 0.3  # ... and D while it is above this


@dataclass(kw_only=True)
class TrainConfig:
    """Length, seeding, logging and checkpointing of a run."""

    steps: int = 10_000
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    threads: int | None = None  # torch CPU threads (default: PyTorch's choice)
    # auto: bf16 autocast where the hardware has bf16 matrix units (AMX CPUs, CUDA), else fp32 | fp32 | bf16
    precision: str = "auto"
    channels_last: bool | None = None  # None (auto): on CUDA, and on CPU together with bf16 (D alone: speed.py)
    compile: str = "off"  # torch.compile for G and D: off | default | reduce-overhead | max-autotune
    # deterministic GPU kernels (torch.use_deterministic_algorithms, cuDNN's deterministic algorithms), so
    # that two runs, or a run and its resume, agree bit for bit on a GPU too; slower. The CPU's kernels
    # are deterministic already
    deterministic: bool = False
    sync_batchnorm: bool = False  # under torchrun: batch norm statistics over the global batch (CUDA only)
    fakes_for_d: str = "train"  # G's mode when making D's fakes: train, or eval (Keras' predict())
    g_batch_size: int | None = None  # noise vectors per G update (default: data.batch_size)
    # G's update reuses the fakes (noise and labels) of the D update just before it, as the PyTorch DCGAN
    # example does, instead of drawing new ones: one forward pass of G fewer a step
    reuse_fakes: bool = False
    # a conditional G's labels in its update: random (uniform over the classes), or batch (the step's real
    # batch's labels, as seed 003 feeds y: batch[1] to both nets)
    g_labels: str = "random"
    abort_weight_above: float | None = None  # stop when any weight's magnitude exceeds this (seed 003)
    # Divergence (a NaN/inf loss or weight, a loss above loss_explosion_above, a weight above
    # abort_weight_above): roll back to the last good checkpoint, multiply both learning rates by
    # divergence_lr_factor and go on, up to divergence_retries times in a row; 0 stops at once.
    divergence_retries: int = 3
    divergence_lr_factor: float = 0.5
    loss_explosion_above: float | None = None  # |any logged loss| above this counts as divergence
    # stop (with a checkpoint) after this many seconds of this invocation (a --resume counts afresh)
    time_limit: float | None = None
    eval_every: int | None = None  # measure dFID against the test split every N steps; keep the best checkpoint
    eval_n: int = 2000  # samples (and test images) for that measurement
    log_every: int = 50
    sample_every: int = 500
    sample_grid: int = 64  # images in the fixed-noise grid (at most MAX_SAMPLE_GRID)
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    judge_every: int | None = None  # seed 000's judged grid into RUN/judge/ every N steps (gankit/viz)
    report_every: int | None = None  # rewrite RUN/report.html every N steps; it refreshes itself while training
    tensorboard: bool | str = "auto"  # events in RUN/tensorboard/: true, false, or "auto" (when it is installed)
    augment: str = ""  # DiffAugment of every image D sees, e.g. "translation,cutout,color" (see gankit.augment)


@dataclass(kw_only=True)
class Config:
    """A whole run's recipe."""

    name: str = "custom"
    description: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimsConfig = field(default_factory=OptimsConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


# Dataclasses whose unknown keys are collected into a dict field instead of being refused; the net
# builder checks them against its own signature.
_EXTRA_INTO = {NetConfig: "params"}
MAX_SAMPLE_GRID = 4096  # train.sample_grid

# ---- dict -> dataclass ---------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp)).replace("typing.", "")


@dataclass(frozen=True)
class Override:
    """A ``--set`` value as typed: its text, and the TOML value it reads as (or TOML's complaint).

    Which of the two is meant depends on the setting's type, known only when the config is built: a
    text setting takes the text (``name=2024-01-01`` is a date in TOML, ``dataset=05`` no TOML at all),
    every other setting the TOML value, and a value that is not TOML is an error naming what is wrong
    with it, not a string that fails later as "expected float, got '.001'"."""

    text: str
    value: Any = None
    error: str | None = None

    def guess(self) -> Any:
        """The value for a setting whose type is not known here (a net's parameter: checked when built)."""
        return self.text if self.error is not None else self.value


def _hint(text: str, tp: Any) -> str:
    """What a ``--set`` value that is not TOML probably lacks, by the setting's type."""
    word = text.strip().strip("'\"").lower()
    if word in ("none", "null", "nil", ""):
        return "a --set cannot unset a setting: leave it out (or the run's value stays)"
    if tp is bool or (typing.get_origin(tp) in (typing.Union, types.UnionType) and bool in typing.get_args(tp)):
        if word in ("true", "false", "yes", "no", "on", "off", "1", "0"):
            return "booleans are written true or false, lower case and unquoted"
    return "numbers need a digit before the point (0.001), lists brackets at both ends ([0.5, 0.999]), text quotes"


def _takes_str(tp: Any) -> bool:
    return tp is str or (typing.get_origin(tp) in (typing.Union, types.UnionType) and str in typing.get_args(tp))


def coerce(value: Any, tp: Any, where: str) -> Any:
    """``value`` checked against type ``tp`` (ints stay ints, a bool is never a number or a string);
    GankitError naming ``where`` when it does not fit."""
    if isinstance(value, Override):
        if value.error is None:
            try:
                return coerce(value.value, tp, where)
            except GankitError:
                if not _takes_str(tp) or isinstance(value.value, str):
                    raise
            return value.text  # the text meant, which TOML reads as a number or a date
        if _takes_str(tp):
            return value.text
        raise GankitError(f"{where} = {value.text!r} is not a valid value ({value.error}); {_hint(value.text, tp)}")
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, where)
            except GankitError as exc:
                errors.append(str(exc))
        raise GankitError(errors[0] if errors else f"{where}: bad value {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise GankitError(f"{where}: expected a table of settings, got {value!r}")
        return from_dict(tp, value, where=where)
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            raise GankitError(f"{where}: expected a list in brackets, e.g. [{value!r}], got {value!r}")
        return [coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise GankitError(f"{where}: expected a table, got {value!r}")
        return _plain(value)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            if not -(2**63) <= value < 2**63:  # TOML's own limit, which Python's reader does not enforce
                raise GankitError(f"{where}: {value} is out of range (a 64-bit integer)")
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(value):  # nan and inf are valid TOML, and no setting means them
                raise GankitError(f"{where}: must be a finite number, got {value}")
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    raise GankitError(f"{where}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")


def _plain(table: dict[str, Any]) -> dict[str, Any]:
    """A table of untyped settings with each ``--set`` value as TOML reads it (or its text)."""
    return {k: v.guess() if isinstance(v, Override) else _plain(v) if isinstance(v, dict) else v
            for k, v in table.items()}


def from_dict(cls: type, data: dict[str, Any], *, where: str = "config") -> Any:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types raise GankitError."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    extra_field = _EXTRA_INTO.get(cls)
    extra: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if key in names and key != extra_field:
            kwargs[key] = coerce(value, hints[key], path)
        elif extra_field is not None:
            extra[key] = value
        else:
            section = f"in [{where}]" if where else "at the top level"
            hint = _elsewhere(key, path, exact=True) or did_you_mean(key, names) or _elsewhere(key, path)
            raise GankitError(f"unknown setting {path!r}{hint}; "
                              f"known {section}: {', '.join(names)}")
    if extra_field is not None:
        given = extra.pop(extra_field, {})
        given = given.guess() if isinstance(given, Override) else given
        if not isinstance(given, dict):
            raise GankitError(f"{where}.{extra_field}: expected a table of settings, got {given!r}")
        given, extra = _plain(given), _plain(extra)
        for key in given.keys() & extra.keys():  # one setting written two ways: which is meant is unclear
            if given[key] != extra[key]:
                raise GankitError(f"{where}.{key} is given twice, as {where}.{key} = {extra[key]!r} and as "
                                  f"{where}.{extra_field}.{key} = {given[key]!r}; keep one (a --set of either "
                                  "replaces both)")
        kwargs[extra_field] = {**given, **extra}
    return cls(**kwargs)


def _setting_paths(cls: type | None = None, prefix: str = "") -> list[str]:
    """Every setting's dotted path in :class:`Config` (sections' fields, not their tables)."""
    cls = cls or Config
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out += _setting_paths(hints[f.name], f"{prefix}{f.name}.")
        elif _EXTRA_INTO.get(cls) != f.name:
            out.append(prefix + f.name)
    return out


def _elsewhere(key: str, path: str, *, exact: bool = False) -> str:
    """A hint for a setting put in the wrong section: the sections that have ``key`` (or, unless
    ``exact``, one like it)."""
    paths = [p for p in _setting_paths() if p != path]
    same = [p for p in paths if p.rsplit(".", 1)[-1] == key]
    if not same and not exact:  # a setting named by one of the key's words (ema_decay: model.ema), else a close one
        words = key.split("_")
        same = [p for p in paths if p.rsplit(".", 1)[-1] in words]
    if not same and not exact:
        near = difflib.get_close_matches(key, sorted({p.rsplit(".", 1)[-1] for p in paths}), n=1, cutoff=0.6)
        same = [p for p in paths if near and p.rsplit(".", 1)[-1] == near[0]]
    if not same:
        return ""
    return f" (did you mean {' or '.join(same[:3])}?)"


def to_dict(obj: Any) -> dict[str, Any]:
    """A config as nested plain dicts, ready for TOML (None dropped; net params inlined)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if value is None:
            continue
        if _EXTRA_INTO.get(type(obj)) == f.name:
            out.update(value)
        elif dataclasses.is_dataclass(value):
            out[f.name] = to_dict(value)
        else:
            out[f.name] = value
    return out


# ---- TOML, presets, overrides ----------------------------------------------------------------------


def parse_toml(text: str, *, source: str) -> dict[str, Any]:
    """Parse TOML text with an error naming the source and the line."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise GankitError(f"{source}: invalid TOML: {exc}") from None


def dumps(config: Config) -> str:
    """The config as TOML text."""
    import tomli_w

    return tomli_w.dumps(to_dict(config))


def read_toml(path: str | Path) -> dict[str, Any]:
    """The tables of a TOML file, with clear errors for a missing or malformed file."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise GankitError(f"{path}: cannot read config: {getattr(exc, 'strerror', None) or exc}") from None
    return parse_toml(text, source=str(path))


def load_file(path: str | Path) -> Config:
    """A config from a TOML file (a run's ``config.toml`` or the user's own)."""
    return validate(from_dict(Config, read_toml(path), where=""))


def preset_names() -> list[str]:
    """Names of the presets shipped in ``gankit/presets``."""
    return sorted(p.name[:-5] for p in resources.files("gankit.presets").iterdir() if p.name.endswith(".toml"))


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def preset_dict(name: str, *, _seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """A preset's raw TOML tables; ``base = "other"`` inherits another preset's tables."""
    if name not in preset_names():
        raise GankitError(f"unknown preset {name!r}{did_you_mean(name, preset_names())}; "
                          "`gankit presets` lists them")
    if name in _seen:
        raise GankitError(f"preset {name!r} inherits from itself ({' -> '.join(_seen + (name,))})")
    text = resources.files("gankit.presets").joinpath(f"{name}.toml").read_text()
    data = parse_toml(text, source=f"preset {name}")
    base = data.pop("base", None)
    return _merge(preset_dict(base, _seen=_seen + (name,)), data) if base else data


def parse_override(item: str) -> tuple[list[str], Override]:
    """``"train.steps=100"`` -> (["train", "steps"], Override("100", 100)): the value's text and what it
    reads as in TOML; the setting's type decides between them when the config is built (:func:`coerce`)."""
    key, sep, raw = item.partition("=")
    keys = [k.strip() for k in key.split(".")]
    if not sep or not all(keys):
        raise GankitError(f"--set expects key=value (e.g. train.steps=100), got {item!r}")
    try:
        return keys, Override(raw, tomllib.loads(f"v = {raw}")["v"])
    except tomllib.TOMLDecodeError as exc:
        return keys, Override(raw, error=str(exc).split(" (at ")[0])


def _net_params_inline(keys: list[str]) -> list[str]:
    """``model.g.params.width`` is ``model.g.width`` (a net's settings are written inline)."""
    return [keys[0], keys[1], keys[3]] if len(keys) == 4 and keys[0] == "model" and keys[2] == "params" else keys


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``--set`` overrides onto a raw config dict (validation happens when it is built)."""
    for item in overrides:
        keys, value = parse_override(item)
        keys = _net_params_inline(keys)
        node = data
        for i, k in enumerate(keys[:-1]):
            below = node.get(k, {})
            if isinstance(below, Override) and below.error is None and isinstance(below.value, dict):
                below = _plain(below.value)  # a table an earlier --set gave whole: model.g={arch="dcgan"}
            if not isinstance(below, dict):
                raise GankitError(f"--set {item}: {'.'.join(keys[: i + 1])} is a value, not a table")
            node[k] = node = below
        if len(keys) == 3 and keys[0] == "model" and isinstance(node.get("params"), dict):
            node["params"].pop(keys[2], None)  # model.g.width replaces a [model.g.params] width too
        node[keys[-1]] = value
    return data


def _leaf_keys(data: dict[str, Any], prefix: str = "") -> set[str]:
    """The dotted names of a raw config's settings (a net's params table read as the net's settings)."""
    out: set[str] = set()
    for k, v in data.items():
        path = prefix + k
        if isinstance(v, dict) and not (prefix.startswith("model.") and k == "params"):
            out |= _leaf_keys(v, path + ".")
        elif isinstance(v, dict):
            out |= {prefix + name for name in v}
        else:
            out.add(path)
    return out


def build(preset: str | None = None, *, overrides: list[str] = (), file: str | Path | None = None,
          run_config: bool = False) -> Config:
    """The config from a preset (or a TOML file, or defaults) plus ``--set`` overrides, validated.

    The settings the user typed (each ``--set``, every key of a ``--config`` file, not a preset's nor
    those of a run's own config.toml, ``run_config``) are also refused where they would do nothing
    (:func:`check_unused`)."""
    if preset and file:
        raise GankitError("give a preset or a config file, not both")
    if preset is not None and not preset.strip():
        raise GankitError("--preset is empty; `gankit presets` lists the names")
    if file is not None and not str(file).strip():
        raise GankitError("--config is empty; give the path of a TOML config file")
    if file:
        data = read_toml(file)
    elif preset:
        data = preset_dict(preset)
        data.setdefault("name", preset)
    else:
        data = {}
    set_keys = {".".join(_net_params_inline(parse_override(item)[0])) for item in overrides}
    file_keys = _leaf_keys(data) if file and not run_config else set()
    try:
        cfg = validate(from_dict(Config, apply_overrides(copy.deepcopy(data), list(overrides)), where=""))
        return check_unused(cfg, set_keys | file_keys)
    except GankitError as exc:
        if not file or str(exc).startswith(str(file)):
            raise
        try:  # a setting of the file itself: say which file (a --set's own error names the --set)
            check_unused(validate(from_dict(Config, data, where="")), file_keys)
        except GankitError:
            raise GankitError(f"{file}: {exc}") from None
        raise


# ---- validation ----------------------------------------------------------------------------------------


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise GankitError(msg)


def _one_of(value: str, choices: typing.Iterable[str], key: str) -> None:
    choices = list(choices)
    _check(value in choices, f"{key} = {value!r} is not one of {', '.join(choices)}{did_you_mean(value, choices)}")


def validate(cfg: Config) -> Config:
    """Range and name checks across the whole config; returns it unchanged."""
    import gankit.losses  # noqa: F401  (registers)
    import gankit.nets  # noqa: F401
    import gankit.train.schedule  # noqa: F401
    from gankit import registry
    from gankit.data import parse_spec
    from gankit.data.sampler import MODES
    from gankit.data.sources import SPLITS

    d, m, t = cfg.data, cfg.model, cfg.train
    name, _ = parse_spec(d.dataset)
    if name != "folder":
        registry.get("dataset", name)
    _one_of(d.split, SPLITS, "data.split")
    _one_of(d.sampler, MODES, "data.sampler")
    _check(d.batch_size > 0, f"data.batch_size must be positive, got {d.batch_size}")
    _check(d.limit is None or d.limit > 0, f"data.limit must be positive, got {d.limit}")
    _check(d.resolution is None or 4 <= d.resolution <= 1024, f"data.resolution must be in 4..1024, got {d.resolution}")
    _check(d.channels in (None, 1, 3), f"data.channels must be 1 or 3, got {d.channels}")
    _check(d.stacked_seed >= 0, f"data.stacked_seed must be >= 0, got {d.stacked_seed}")
    _check(d.stacked_size is None or d.stacked_size > 0, f"data.stacked_size must be positive, got {d.stacked_size}")
    _check(m.latent_dim > 0, f"model.latent_dim must be positive, got {m.latent_dim}")
    _one_of(m.noise, ("normal", "uniform"), "model.noise")
    _one_of(m.output, ("tanh", "sigmoid"), "model.output")
    _check(m.image_range is None or (len(m.image_range) == 2 and m.image_range[0] < m.image_range[1]),
           f"model.image_range must be [low, high] with low < high, got {m.image_range}")
    _one_of(m.init, ("keras", "dcgan", "tf-truncated", "torch"), "model.init")
    from gankit.nets import check_params

    m.g.params = check_params("generator", m.g.arch, m.g.params)
    m.d.params = check_params("discriminator", m.d.arch, m.d.params)
    registry.get("loss", cfg.loss.name)
    _one_of(cfg.loss.d_update, ("joint", "concat", "separate"), "loss.d_update")
    _check(cfg.loss.label_noise >= 0, f"loss.label_noise must be >= 0, got {cfg.loss.label_noise}")
    targeted = (cfg.loss.real_label, cfg.loss.fake_label, cfg.loss.label_noise) != (1.0, 0.0, 0.0)
    _check(not targeted or registry.get("loss", cfg.loss.name).uses_targets,
           f"loss.real_label, loss.fake_label and loss.label_noise are targets of a cross-entropy loss; "
           f"loss.name = {cfg.loss.name!r} has none, so they would do nothing (use bce or minimax)")
    _check(cfg.loss.gp_weight >= 0 and cfg.loss.r1_gamma >= 0, "loss.gp_weight and loss.r1_gamma must be >= 0")
    _check(cfg.loss.clip_eps == 0 or 0 < cfg.loss.clip_eps < 0.5,
           f"loss.clip_eps must be 0 (off) or in (0, 0.5), got {cfg.loss.clip_eps}")
    _check(cfg.loss.clip_eps == 0 or registry.get("loss", cfg.loss.name).uses_targets,
           f"loss.clip_eps is Keras' clipping of a cross-entropy loss's probabilities; loss.name = "
           f"{cfg.loss.name!r} has no probabilities to clip (use bce or minimax)")
    _check(cfg.loss.class_weight >= 0, f"loss.class_weight must be >= 0, got {cfg.loss.class_weight}")
    _check(0.0 < cfg.loss.topk <= 1.0, f"loss.topk must be in (0, 1] (1 = off), got {cfg.loss.topk}")
    _check(0.0 < cfg.loss.topk_gamma <= 1.0, f"loss.topk_gamma must be in (0, 1], got {cfg.loss.topk_gamma}")
    _check(cfg.loss.r1_every >= 1, f"loss.r1_every must be >= 1, got {cfg.loss.r1_every}")
    _check(not ((cfg.loss.gp_weight or cfg.loss.r1_gamma) and cfg.loss.d_update == "separate"),
           "loss.gp_weight and loss.r1_gamma need loss.d_update = joint or concat")
    # the penalties differentiate D's gradient (double backward), which torch.compile cannot do
    _check(not ((cfg.loss.gp_weight or cfg.loss.r1_gamma) and cfg.train.compile != "off"),
           "loss.gp_weight and loss.r1_gamma need train.compile = 'off' (torch.compile has no double backward)")
    _one_of(m.sn, ("none", "d", "both"), "model.sn")
    _check(m.ema == 0 or 0 < m.ema < 1, f"model.ema must be 0 (off) or a decay in (0, 1), got {m.ema}")
    _check(m.ema_start >= 0, f"model.ema_start must be >= 0, got {m.ema_start}")
    _check(m.ema_rampup >= 0, f"model.ema_rampup must be >= 0, got {m.ema_rampup}")
    _check(m.pack >= 1, f"model.pack must be >= 1, got {m.pack}")
    _check(m.clusters >= 0, f"model.clusters must be >= 0 (0 = off), got {m.clusters}")
    if m.clusters:
        _check(not m.conditional, "model.clusters (self-conditioning) is for unconditional models: a "
               "conditional model already has its classes")
        _check(m.pack == 1, "model.clusters and model.pack do not combine: a packed group of images has "
               "no single cluster")
        _check(m.clusters > 1, f"model.clusters = {m.clusters}: one cluster is no conditioning (use 0 for off)")
    if m.pack > 1:
        _check(not m.conditional, "model.pack (PacGAN) is for unconditional models: a packed group of images "
               "has no single class for a conditional D")
        batches = {"data.batch_size": d.batch_size, "train.g_batch_size": t.g_batch_size}
        if cfg.schedule.name == "thresholds":  # its held-out batches: val_size fakes, val_size / 2 reals
            val = cfg.schedule.val_size
            batches.update({"schedule.val_size": val, "schedule.val_size / 2": val // 2})
        for key, n in batches.items():
            _check(n is None or n % m.pack == 0,
                   f"{key} = {n} is not a multiple of model.pack = {m.pack}: D judges whole groups of images")
    from gankit.augment import parse_policy

    parse_policy(t.augment)
    for side in ("g", "d"):
        o: OptimConfig = getattr(cfg.optim, side)
        key = f"optim.{side}"
        _one_of(o.name, ("adam", "sgd", "rmsprop"), f"{key}.name")
        _check(o.lr > 0, f"{key}.lr must be positive, got {o.lr}")
        _check(len(o.betas) == 2 and all(0 <= b < 1 for b in o.betas), f"{key}.betas must be two numbers in [0, 1)")
        _check(o.eps > 0 and o.weight_decay >= 0 and o.decay >= 0,
               f"{key}: weight_decay and decay must be >= 0 and eps > 0")
        # momentum >= 1 adds up every gradient without forgetting (the steps grow without bound)
        _check(0 <= o.momentum < 1, f"{key}.momentum must be in [0, 1), got {o.momentum}")
        _check(0 <= o.alpha < 1, f"{key}.alpha (rmsprop's rho) must be in [0, 1), got {o.alpha}")
        _check(o.clip_value is None or o.clip_value > 0, f"{key}.clip_value must be positive")
        _check(not o.linear_decay or (len(o.linear_decay) == 2 and 0 <= o.linear_decay[0] < o.linear_decay[1]),
               f"{key}.linear_decay must be [start, end] steps with 0 <= start < end, got {o.linear_decay}")
        _check(0 <= o.lr_final <= 1, f"{key}.lr_final must be a fraction of lr in [0, 1], got {o.lr_final}")
    registry.get("schedule", cfg.schedule.name)
    s = cfg.schedule
    _check(s.d_steps >= 1 and s.g_steps >= 1, "schedule.d_steps and g_steps must be >= 1")
    _check(s.name == "alternate" or (s.d_steps, s.g_steps) == (1, 1),
           f"schedule.d_steps and g_steps are the alternate schedule's; {s.name!r} decides each step's updates "
           f"itself (one D or G update at a time), so d_steps = {s.d_steps}, g_steps = {s.g_steps} would do nothing")
    _check(0 <= s.g_target <= 1 and 0 <= s.d_target <= 1, "schedule.g_target and d_target must be in [0, 1]")
    _check(s.val_size >= 2 and s.max_phase_steps >= 1 and s.every >= 1,
           "schedule.val_size must be >= 2, max_phase_steps and every >= 1")
    _check(s.d_above < s.g_below, "schedule.d_above must be below g_below, or neither side would train")
    _check(t.steps > 0, f"train.steps must be positive, got {t.steps}")
    _one_of(t.device, ("auto", "cpu", "cuda"), "train.device")
    _one_of(t.fakes_for_d, ("train", "eval"), "train.fakes_for_d")
    _check(t.threads is None or t.threads > 0, f"train.threads must be positive, got {t.threads}")
    _one_of(t.precision, ("auto", "fp32", "bf16"), "train.precision")
    _one_of(t.compile, ("off", "default", "reduce-overhead", "max-autotune"), "train.compile")
    _check(t.g_batch_size is None or t.g_batch_size > 0, f"train.g_batch_size must be positive, got {t.g_batch_size}")
    _check(not (t.reuse_fakes and t.fakes_for_d != "train"),
           "train.reuse_fakes needs train.fakes_for_d = 'train' (G's update needs fakes made in training mode)")
    _check(not (t.reuse_fakes and t.g_batch_size not in (None, d.batch_size)),
           "train.reuse_fakes needs G's batch to be D's: leave train.g_batch_size unset")
    _one_of(t.g_labels, ("random", "batch"), "train.g_labels")
    _check(t.g_labels == "random" or (m.conditional and t.g_batch_size in (None, d.batch_size)),
           "train.g_labels = 'batch' gives G the real batch's labels: it needs model.conditional = true and "
           "train.g_batch_size unset")
    _check(t.abort_weight_above is None or t.abort_weight_above > 0, "train.abort_weight_above must be positive")
    _check(t.divergence_retries >= 0, f"train.divergence_retries must be >= 0, got {t.divergence_retries}")
    _check(0 < t.divergence_lr_factor < 1,
           f"train.divergence_lr_factor must be in (0, 1), got {t.divergence_lr_factor}")
    _check(t.loss_explosion_above is None or t.loss_explosion_above > 0, "train.loss_explosion_above must be positive")
    _check(t.time_limit is None or t.time_limit > 0, "train.time_limit must be positive")
    _check(t.eval_every is None or t.eval_every > 0, "train.eval_every must be positive")
    _check(t.eval_n >= 2, f"train.eval_n must be at least 2, got {t.eval_n}")
    for key in ("judge_every", "report_every"):
        _check(getattr(t, key) is None or getattr(t, key) > 0, f"train.{key} must be positive, got {getattr(t, key)}")
    _check(t.tensorboard in (True, False, "auto"),
           f"train.tensorboard must be true, false or \"auto\", got {t.tensorboard!r}")
    for key in ("log_every", "sample_every", "sample_grid", "checkpoint_every", "keep_checkpoints"):
        _check(getattr(t, key) > 0, f"train.{key} must be positive, got {getattr(t, key)}")
    # the grid is one forward pass of G, kept with the run: a mistyped count ended in the kernel's silent
    # out-of-memory kill (1,000,000 reached 24 GB); `gankit sample` makes any number in batches
    _check(t.sample_grid <= MAX_SAMPLE_GRID, f"train.sample_grid must be at most {MAX_SAMPLE_GRID:,} (a 64 x 64 "
           f"grid), got {t.sample_grid:,}; `gankit sample RUN --n N` makes more images from a checkpoint")
    return cfg


def check_unused(cfg: Config, typed: set[str]) -> Config:
    """Refuse a setting the user typed (``typed``: dotted names) that this config ignores, at other than
    its default, such as Adam's betas on SGD: they would believe it does something. A preset's own
    settings are not checked (its betas stay behind when ``--set optim.g.name=sgd`` switches the
    optimizer). Returns ``cfg``."""
    m, loss = cfg.model, cfg.loss
    rules: list[tuple[str, bool, str]] = [
        ("model.ema_start", m.ema > 0, "shapes G's weight average, and model.ema = 0 keeps none; set model.ema"),
        ("model.ema_rampup", m.ema > 0, "shapes G's weight average, and model.ema = 0 keeps none; set model.ema"),
        ("loss.r1_every", loss.r1_gamma > 0, "spaces out the R1 penalty, and loss.r1_gamma = 0 has none"),
        ("loss.topk_gamma", loss.topk < 1, "shrinks top-k training's fraction, and loss.topk = 1 keeps it off"),
    ]
    for side in ("g", "d"):
        o: OptimConfig = getattr(cfg.optim, side)
        has = {"adam": ("betas", "eps"), "sgd": ("momentum",), "rmsprop": ("momentum", "alpha", "eps")}[o.name]
        rules += [(f"optim.{side}.{name}", name in has, f"does nothing for optim.{side}.name = {o.name!r} (it "
                   "has no such setting); leave it out, or choose an optimizer that has it")
                  for name in ("betas", "momentum", "alpha", "eps")]
        rules.append((f"optim.{side}.lr_final", bool(o.linear_decay),
                      f"is where optim.{side}.linear_decay ends, and linear_decay is off"))
    for key, used, why in rules:
        if key in typed and not used:
            section, name = key.rsplit(".", 1)
            table = getattr(cfg.optim, section[-1]) if section.startswith("optim.") else getattr(cfg, section)
            value = getattr(table, name)
            if value != getattr(type(table)(), name):  # (its default does nothing anywhere: a whole config file)
                raise GankitError(f"{key} = {value} {why}")
    return cfg
