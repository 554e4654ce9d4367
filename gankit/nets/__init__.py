"""Generator/discriminator pairs, built by registered name from a config.

Contract: ``G(z [N, latent], labels [N] | None) -> images [N, C, H, W]`` in the model's output
range; ``D(images, labels | None) -> logits [N]`` (no sigmoid: losses work on logits).
"""

from __future__ import annotations

import inspect
import math
import typing
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from gankit import registry
from gankit.errors import GankitError, did_you_mean
from gankit.nets import dcgan, mlp, resnet, sequential  # noqa: F401  (registers)
from gankit.nets.conditional import apply_spectral_norm, has_spectral_norm
from gankit.nets.pack import Packed, packed_shape
from gankit.nets.selfcond import ClusterDiscriminator, ClusterGenerator

__all__ = ["build_nets", "check_params", "init_weights", "layer_table", "traced_forward"]

_FIXED = {"latent_dim", "image_shape", "num_classes", "output"}


def check_params(kind: str, arch: str, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` (``model.g.*`` or ``model.d.*``) checked against the net's constructor: every key one
    it takes, every value of the type its annotation gives (a bool a bool, not the string "false", an
    int an int); GankitError otherwise. Returns them as the constructor takes them."""
    from gankit.config import coerce

    cls = registry.get(kind, arch)
    allowed = [p for p in inspect.signature(cls).parameters if p not in _FIXED]
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # a user's net whose annotations do not resolve here: its constructor checks its values
        hints = {}
    out = {}
    for key, value in params.items():
        if key not in allowed:
            others = [a for a in registry.names(kind) if a != arch and key in inspect.signature(registry.get(kind, a)
                                                                                              ).parameters]
            hint = (f" ({key} is {others[0]!r}'s: a --set of model.{kind[0]}.arch keeps the table's other settings; "
                    f"give it whole instead, --set 'model.{kind[0]}={{arch=\"{arch}\"}}')") if others else ""
            raise GankitError(f"unknown setting model.{kind[0]}.{key} for {kind} {arch!r}"
                              f"{did_you_mean(key, allowed)}; it takes: {', '.join(allowed)}{hint}")
        out[key] = coerce(value, hints.get(key, Any), f"model.{kind[0]}.{key}")
    return out


def _build(kind: str, arch: str, params: dict[str, Any], fixed: dict[str, Any]) -> nn.Module:
    cls = registry.get(kind, arch)
    sig = inspect.signature(cls)
    params = check_params(kind, arch, params)
    kwargs = {k: v for k, v in fixed.items() if k in sig.parameters}
    try:
        return cls(**kwargs, **params)
    except (TypeError, ValueError) as exc:
        raise GankitError(f"cannot build {kind} {arch!r} from model.{kind[0]} = {params}: {exc}") from None


def init_weights(net: nn.Module, scheme: str) -> None:
    """Re-initialise weights: ``keras`` (glorot-uniform kernels, zero biases), ``dcgan`` (N(0, 0.02)),
    ``tf-truncated`` (seed 003: truncated normal with std 2/sqrt(number of weights), cut at 2 std), or
    ``torch`` (leave PyTorch's defaults). Batch-norm scales start at 1 and shifts at 0 in all.

    Spectrally normalised weights are initialised through their raw weight, and their power-iteration
    vectors are started afresh for it (so the first forward pass already divides by the right norm)."""
    if scheme == "torch":
        return
    normalised = [m for m in net.modules() if has_spectral_norm(m)]
    for m in normalised:  # the raw weight back in place of the parametrization, for the in-place init below
        parametrize.remove_parametrizations(m, "weight", leave_parametrized=False)
    for m in net.modules():
        if isinstance(m, nn.Linear | nn.Conv2d | nn.ConvTranspose2d | nn.Embedding):
            if scheme == "tf-truncated":
                std = 2.0 / m.weight.numel() ** 0.5
                nn.init.trunc_normal_(m.weight, std=std, a=-2 * std, b=2 * std)
            elif scheme == "keras":
                if isinstance(m, nn.Embedding):
                    nn.init.uniform_(m.weight, -0.05, 0.05)  # Keras' Embedding default
                else:
                    nn.init.xavier_uniform_(m.weight)
            else:
                nn.init.normal_(m.weight, 0.0, 0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d) and m.affine:
            if scheme == "dcgan":
                nn.init.normal_(m.weight, 1.0, 0.02)
            else:
                nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    for m in normalised:
        apply_spectral_norm(m)


def build_nets(model_cfg: Any, *, image_shape: tuple[int, int, int], num_classes: int) -> tuple[nn.Module, nn.Module]:
    """G and D from a :class:`gankit.config.ModelConfig`, initialised by its scheme.

    With ``model_cfg.pack`` > 1, D is built for that many images stacked on the channel axis and
    wrapped in :class:`gankit.nets.pack.Packed` (PacGAN). With ``model_cfg.clusters`` = K, G and D are
    conditional on K clusters and wrapped as in :mod:`gankit.nets.selfcond` (their sizes and centres are
    set from the data by the training loop and saved with the weights)."""
    clusters = getattr(model_cfg, "clusters", 0)
    ncls = clusters or (num_classes if model_cfg.conditional else 0)
    fixed = {"latent_dim": model_cfg.latent_dim, "image_shape": tuple(image_shape), "num_classes": ncls,
             "output": model_cfg.output}
    pack = getattr(model_cfg, "pack", 1)
    g = _build("generator", model_cfg.g.arch, model_cfg.g.params, fixed)
    d = _build("discriminator", model_cfg.d.arch, model_cfg.d.params,
               {**fixed, "image_shape": packed_shape(tuple(image_shape), pack)})
    init_weights(g, model_cfg.init)
    init_weights(d, model_cfg.init)
    sn = getattr(model_cfg, "sn", "none")  # the model-level switch, for any architecture
    if sn in ("d", "both"):
        apply_spectral_norm(d)
    if sn == "both":
        apply_spectral_norm(g)
    if clusters:  # self-conditioning: the conditional nets, G picking its cluster from z, D's centres kept
        return (ClusterGenerator(g, clusters, noise=model_cfg.noise),
                ClusterDiscriminator(d, clusters, math.prod(image_shape)))
    return g, (Packed(d, pack) if pack > 1 else d)


def traced_forward(net: nn.Module, hooks: list[Any], *inputs: Any) -> None:
    """One forward pass of ``net`` in eval mode without gradients (batch norm's statistics, spectral norm's
    vectors and the random streams untouched), for ``hooks`` that read its layers; removes them after, and
    puts the net back in its mode."""
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            net(*inputs)
    finally:
        net.train(was_training)
        for h in hooks:
            h.remove()


def layer_table(net: nn.Module, *inputs: torch.Tensor) -> tuple[str, int, int]:
    """A Keras-style summary (layer, type, output shape, params) by running ``inputs`` through ``net``.

    Returns (table text, total params, trainable params). Buffers such as batch-norm running
    statistics count as non-trainable params, as in Keras' summaries.
    """
    rows: list[tuple[str, str, str, int]] = []
    hooks = []
    for name, mod in net.named_modules():
        if "parametrizations" in name.split("."):
            continue  # a spectral-norm parametrization belongs to the layer that holds it
        if name and not [c for n, c in mod.named_children() if n != "parametrizations"]:
            def hook(m: nn.Module, _inp: Any, out: Any, name: str = name) -> None:
                shape = tuple(out.shape) if isinstance(out, torch.Tensor) else "?"
                n = sum(p.numel() for p in m.parameters())
                n += sum(b.numel() for k, b in m.named_buffers() if not k.endswith("num_batches_tracked"))
                rows.append((name, type(m).__name__, str(shape), n))
            hooks.append(mod.register_forward_hook(hook))
    traced_forward(net, hooks, *inputs)
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    buffers = sum(b.numel() for k, b in net.named_buffers() if not k.endswith("num_batches_tracked"))
    total = trainable + buffers
    width = max([len(r[0]) for r in rows] + [5])
    lines = [f"{'layer':<{width}}  {'type':<18} {'output':<22} {'params':>12}"]
    lines += [f"{r[0]:<{width}}  {r[1]:<18} {r[2]:<22} {r[3]:>12,}" for r in rows]
    lines.append(f"total params: {total:,}  trainable: {trainable:,}  non-trainable: {buffers:,}")
    return "\n".join(lines), total, trainable
