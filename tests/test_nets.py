import copy

import pytest
import torch
from torch import nn

from gankit import config as C
from gankit import registry
from gankit.errors import GankitError
from gankit.nets import build_nets, layer_table
from gankit.nets.conditional import ProjectionHead, has_classifier
from gankit.nets.layers import Conv2dSame, ConvTranspose2dSame, Flatten, Reshape, ToImage
from gankit.nets.sequential import build_layers
from gankit.train import speed
from tests.helpers import UNCLUSTERED

# The parameter counts the seed documents print (Keras counts batch-norm statistics as params).
SEED_COUNTS = {
    "seed000-dcgan-letters": (2_394_241, 4_311_553),
    "seed004-dcgan-ships": (9_410_307, 790_913),
}


@pytest.mark.parametrize("preset", sorted(SEED_COUNTS))
def test_seed_parameter_counts(preset):
    cfg = C.build(preset)
    from gankit.data import describe

    info = describe(cfg.data.dataset)
    G, D = build_nets(cfg.model, image_shape=(info.channels, info.resolution, info.resolution),
                      num_classes=info.num_classes)
    z = torch.zeros(2, cfg.model.latent_dim)
    _, g_total, _ = layer_table(G, z)
    _, d_total, _ = layer_table(D, torch.zeros(2, info.channels, info.resolution, info.resolution))
    assert (g_total, d_total) == SEED_COUNTS[preset]


# Tiny settings per architecture for 3x8x8 images (every registered arch needs an entry).
TINY = {
    "layers": ({"layers": ["dense 64", "relu", "reshape 4 4 4", "up 2", "convT 3 3 pad=same", "tanh"]},
               {"layers": ["conv 8 3 s=2 pad=same", "lrelu 0.2", "flatten", "label", "dense 1"]}),
    "mlp": ({"hidden": [16]}, {"hidden": [16]}),
    "dcgan": ({"width": 4, "depth": 1}, {"width": 4, "depth": 1}),
    "resnet": ({"width": 4}, {"width": 4, "depth": 1}),
}


def _nets(arch, shape, *, conditional=False, g=None, d=None, num_classes=4, extra=()):
    cfg = C.build(None, overrides=[f"model.g.arch='{arch}'", f"model.d.arch='{arch}'",
                                   f"model.conditional={str(conditional).lower()}", "model.latent_dim=5", *extra])
    cfg.model.g.params, cfg.model.d.params = dict(g or TINY[arch][0]), dict(d or TINY[arch][1])
    return build_nets(cfg.model, image_shape=shape, num_classes=num_classes)


def test_every_architecture_has_test_settings():
    assert set(registry.names("generator")) == set(registry.names("discriminator")) == set(TINY)


@pytest.mark.parametrize("arch", registry.names("generator"))
@pytest.mark.parametrize("conditional", [False, True])
def test_generators_and_discriminators(arch, conditional):
    G, D = _nets(arch, (3, 8, 8), conditional=conditional)
    y = torch.tensor([0, 3]) if conditional else None
    x = G(torch.randn(2, 5), y)
    assert x.shape == (2, 3, 8, 8) and x.min() >= -1 and x.max() <= 1
    assert D(x, y).shape == (2,)
    if conditional:  # label mixtures (seed 003's interpolation) are accepted too
        mix = torch.tensor([[0.5, 0.5, 0, 0], [0, 0, 0.2, 0.8]])
        assert G(torch.randn(2, 5), mix).shape == (2, 3, 8, 8)


@pytest.mark.parametrize("arch", [a for a in registry.names("generator") if a != "layers"])  # layers: fixed shapes
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (3, 64, 64)])
def test_output_shapes_at_every_resolution(arch, shape):
    G, D = _nets(arch, shape, conditional=True)
    y = torch.tensor([1, 2, 3])
    x = G(torch.randn(3, 5), y)
    assert x.shape == (3, *shape) and D(x, y).shape == (3,)


def _count(net):
    return sum(p.numel() for p in net.parameters())


# Parameter counts worked out by hand from the layer definitions (see each comment).
COUNTS = {
    # G: dense 5->4*4*4 (384), BN 4 (8), 3x3 conv 4->4 (148), BN (8), convT 4->3 k4 (195);
    # D: conv 3->4 k4 (196), 3x3 conv 4->4 (148), linear 4*4*4->1 (65)
    ("dcgan", (3, 8, 8), False): (743, 409),
    # conditional: batch norms lose their affine (2*4 each) and gain a per-class scale and shift (2*4*4 each);
    # D gains the projection embedding (4 classes x 64 features)
    ("dcgan", (3, 8, 8), True): (743 + 2 * (32 - 8), 409 + 256),
    # the DCGAN-64 pair for MNIST: dense 100->7*7*128, BN 128, convT 128->64 k4, BN 64, convT 64->1 k4;
    # D: conv 1->64 k4, conv 64->128 k4, linear 6272->1
    ("dcgan64", (1, 28, 28), False): (627_200 + 6272 + 256 + 131_136 + 128 + 1025, 1088 + 131_200 + 6273),
    # SNGAN-style, width w = 4 at 8x8: G dense 5->64 (384), one up block (19w^2 + 7w = 332), BN (8),
    # conv 4->3 3x3 (111); D first block (3*4*9+4 + 4*4*9+4 + 3*4+4 = 276), one plain block (2*148), linear (5)
    ("resnet", (3, 8, 8), False): (384 + 332 + 8 + 111, 276 + 296 + 5),
    ("mlp", (3, 8, 8), False): (6 * 16 + 32 + 17 * 192, 193 * 16 + 17),
}


@pytest.mark.parametrize("key", sorted(COUNTS, key=str))
def test_parameter_counts(key):
    arch, shape, conditional = key
    settings = ({"width": 64}, {"width": 64}) if arch == "dcgan64" else (None, None)
    G, D = _nets(arch.replace("64", ""), shape, conditional=conditional, g=settings[0], d=settings[1],
                 extra=["model.latent_dim=100"] if arch == "dcgan64" else ())
    assert (_count(G), _count(D)) == COUNTS[key]


def test_spectral_norm_brings_the_top_singular_value_to_one():
    from gankit.nets.conditional import apply_spectral_norm

    torch.manual_seed(0)
    lin = apply_spectral_norm(torch.nn.Sequential(torch.nn.Linear(30, 20)))[0]
    with torch.no_grad():
        lin.parametrizations.weight.original.mul_(7.0)
        for _ in range(30):  # one power iteration per training forward pass
            lin(torch.randn(2, 30))
    assert torch.linalg.matrix_norm(lin.weight, 2).item() == pytest.approx(1.0, abs=1e-3)
    assert torch.linalg.matrix_norm(lin.parametrizations.weight.original, 2).item() > 5


@pytest.mark.parametrize("how", ["net", "model"])
def test_spectral_norm_from_config_keeps_the_init_and_saves_its_vectors(how):
    extra = ["model.init='dcgan'"] + (["model.sn='d'"] if how == "model" else [])
    d = {"width": 8, "sn": True} if how == "net" else {"width": 8}
    _, D = _nets("dcgan", (1, 28, 28), d=d, extra=extra)
    keys = D.state_dict().keys()
    convs = [m for m in D.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
    assert convs and all(f"{k}.parametrizations.weight.0._u" in keys for k in ("features.0", "head.linear"))
    raw = D.features[0].parametrizations.weight.original
    # the N(0, 0.02) init reached the raw weight (through the parametrization it would have been lost,
    # leaving PyTorch's default, std 1/sqrt(3 * 16) = 0.14 here)
    assert raw.std().item() == pytest.approx(0.02, rel=0.3)
    # and the weight D uses is that weight divided by its (power-iteration estimate of the) top singular value
    w = D.features[0].weight.flatten(1)
    assert torch.linalg.matrix_norm(w, 2).item() == pytest.approx(1.0, abs=0.15)


@pytest.mark.parametrize("arch", ["dcgan", "resnet"])
def test_projection_discriminator(arch):
    """D(x, y) = linear(phi(x)) + <embed(y), phi(x)>, and linear in a mixture of labels."""
    torch.manual_seed(0)
    _, D = _nets(arch, (3, 8, 8), conditional=True)
    D.eval()
    x, y = torch.randn(3, 3, 8, 8), torch.tensor([0, 2, 3])
    phi = D.features(x) if arch == "dcgan" else torch.relu(D.blocks(x)).sum(dim=(2, 3))  # [N, F]
    with torch.no_grad():
        D.head.embed.weight.normal_()
    embed = D.head.embed.weight.T[y]  # [N, F]: class y's embedding
    expected = D.head.linear(phi).squeeze(1) + (embed * phi).sum(1)
    assert torch.allclose(D(x, y), expected, atol=1e-5)
    mix = 0.25 * torch.nn.functional.one_hot(y, 4).float() + 0.75 * torch.nn.functional.one_hot(y.flip(0), 4).float()
    assert torch.allclose(D(x, mix), 0.25 * D(x, y) + 0.75 * D(x, y.flip(0)), atol=1e-5)


def test_conditional_batch_norm_scales_and_shifts_per_class():
    from gankit.nets.conditional import Norm2d

    norm = Norm2d(3, num_classes=2)
    with torch.no_grad():
        norm.gain[1] = torch.tensor([1.0, 0.0, -0.5])
        norm.shift[1] = torch.tensor([0.0, 2.0, 0.0])
    x = torch.randn(4, 3, 5, 5)
    y = torch.tensor([0, 1, 0, 1])
    out, plain = norm(x, y), torch.nn.functional.batch_norm(x, None, None, training=True, eps=1e-5)
    assert torch.allclose(out[0], plain[0], atol=1e-5)  # class 0: plain batch norm
    scale, shift = torch.tensor([2.0, 1.0, 0.5]).view(3, 1, 1), torch.tensor([0.0, 2.0, 0.0]).view(3, 1, 1)
    assert torch.allclose(out[1], plain[1] * scale + shift, atol=1e-5)


@pytest.mark.parametrize("autocast", [False, True])
def test_conditional_batch_norm_gathers_the_rows_a_one_hot_product_would_pick(autocast):
    """Class indices take their rows by gathering; the same labels as one-hot mixtures take the matrix
    product. Outputs and the per-class parameters' gradients agree (in bf16 autocast too)."""
    from gankit.nets.conditional import Norm2d

    torch.manual_seed(0)
    norm = Norm2d(4, num_classes=3)
    with torch.no_grad():
        norm.gain.normal_()
        norm.shift.normal_()
    x, y = torch.randn(6, 4, 5, 5), torch.tensor([0, 2, 2, 1, 0, 2])
    results = []
    for labels in (y, torch.nn.functional.one_hot(y, 3).float()):
        norm.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = norm(x, labels)
        (out.float() * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        results.append((out.float(), norm.gain.grad.clone(), norm.shift.grad.clone()))
    for a, b in zip(*results):  # in bf16 the product's gradient is rounded to bf16, the gather's is not
        tol = 1e-2 * b.abs().max().item() if autocast else 1e-5
        assert torch.allclose(a, b, atol=tol, rtol=0)
    assert results[0][1][1].abs().sum() > 0  # class 1 appears once, and its gain gets a gradient


@pytest.mark.parametrize("arch", ["dcgan", "resnet"])
def test_label_input_gives_the_class_to_a_fresh_generator(arch):
    """Conditional BN starts class-blind; with label_input the class is in z from the first step."""
    z = torch.randn(1, 5).expand(2, 5)
    y = torch.tensor([0, 3])
    for label_input, differs in ((False, False), (True, True)):
        torch.manual_seed(0)
        G, _ = _nets(arch, (1, 8, 8), conditional=True, g={**TINY[arch][0], "label_input": label_input})
        G.eval()
        with torch.no_grad():
            out = G(z, y)
        assert (not torch.allclose(out[0], out[1])) is differs
    assert G.fc.in_features == 5 + 4
    mix = torch.tensor([[0.5, 0.0, 0.0, 0.5]])  # a mixture of classes enters z as the mixture of one-hots
    with torch.no_grad():
        assert G(z[:1], mix).shape == (1, 1, 8, 8)
    with pytest.raises(GankitError, match="label_input needs class labels"):
        _nets(arch, (1, 8, 8), conditional=False, g={**TINY[arch][0], "label_input": True})


@pytest.mark.parametrize("arch", ["dcgan", "resnet"])
def test_classifier_head_gives_class_logits(arch):
    """model.d.classifier adds an AC-GAN class head; the plain call still returns the logits alone."""
    _, D = _nets(arch, (1, 8, 8), conditional=True, d={**TINY[arch][1], "classifier": True})
    x, y = torch.randn(3, 1, 8, 8), torch.tensor([0, 1, 3])
    logits, cls = D(x, y, with_classes=True)
    assert logits.shape == (3,) and cls.shape == (3, 4)
    assert torch.equal(D(x, y), logits)
    assert has_classifier(D)
    _, plain = _nets(arch, (1, 8, 8), conditional=True)
    assert not has_classifier(plain)
    with pytest.raises(ValueError, match="no class head"):
        plain(x, y, with_classes=True)
    with pytest.raises(GankitError, match="classifier needs class labels"):
        _nets(arch, (1, 8, 8), conditional=False, d={**TINY[arch][1], "classifier": True})


def test_bad_image_side_is_a_clear_error():
    with pytest.raises(GankitError, match="image side 30 is not 4 x 2"):
        _nets("dcgan", (1, 30, 30))


@pytest.mark.parametrize("size, k, s", [(28, 5, 2), (14, 5, 2), (28, 5, 4), (16, 4, 2), (9, 3, 1)])
def test_tensorflow_same_padding_is_the_adjoint_pair(size, k, s):
    """TensorFlow defines its 'same' transposed conv as the adjoint of its 'same' conv:
    <conv(x), y> = <x, convT(y)> with shared weights. Both modules must honour that."""
    torch.manual_seed(0)
    conv = Conv2dSame(2, 3, k, s)
    convT = ConvTranspose2dSame(3, 2, k, s)
    with torch.no_grad():
        convT.weight.copy_(conv.weight)
        conv.bias.zero_()
        convT.bias.zero_()
    x = torch.randn(1, 2, size, size)
    y_shape = conv(x).shape
    assert y_shape[-1] == -(-size // s)  # ceil(size / stride)
    y = torch.randn(y_shape)
    assert convT(y).shape == x.shape
    assert torch.allclose((conv(x) * y).sum(), (x * convT(y)).sum(), rtol=1e-4, atol=1e-4)
    if (size, k, s) == (28, 5, 2):
        # the total padding is odd here: TensorFlow puts the extra row at the bottom, unlike padding=2
        sym = torch.nn.functional.conv2d(x, conv.weight, None, s, 2)
        assert sym.shape == y_shape and not torch.allclose(sym, conv(x))


@pytest.mark.parametrize("specs, message", [
    (["flatten", "dense 10", "conv 3 3"], "needs image"),
    (["dense 10"], "needs flat"),
    (["flatten", "wobble 3"], "unknown op 'wobble'"),
    (["reshape 3 3 3"], "cannot reshape"),
    (["dense x"], "not a number"),
    # options an op does not take are refused, not ignored (stride= is s=, a misspelt momentum)
    (["conv 8 3 stride=2"], r"unknown option 'stride'; conv takes s=, pad="),
    (["bn momentm=0.9"], r"unknown option 'momentm' \(did you mean 'momentum'\?\)"),
    (["relu x=1"], "relu takes no options"),
    (["flatten", "dense 10 20"], "dense takes at most 1 number, got 2"),
    # counts are whole numbers >= 1: no rounded-down fraction of a channel, no ZeroDivisionError
    (["conv 8.9 3"], r"its channels \(argument 1\) must be a whole number >= 1, got 8.9"),
    (["conv 8 0"], r"its kernel size \(argument 2\) must be a whole number >= 1, got 0"),
    (["conv 8 3 s=0"], "s= must be a whole number >= 1, got 0"),
    (["conv 8 3 pad=half"], "pad=half is not same, valid or a whole number"),
    (["maxpool 0"], "window .* must be a whole number >= 1, got 0"),
    (["up 0"], "factor .* must be a whole number >= 1, got 0"),
    (["flatten", "dense 0"], "width .* must be a whole number >= 1, got 0"),
    (["bn eps=0"], r"eps= must be in \(0, inf\]"),
    (["bn momentum=5"], r"momentum= \(Keras'\) must be in \[0, 1\]"),
    (["dropout 1"], r"the rate must be in \[0, 1\)"),
    (["lrelu nan"], "not a finite number"),
    (["flatten", 3], "each layer is a string"),
    ("flatten", "give a list of layer strings"),
])
def test_layer_spec_errors(specs, message):
    with pytest.raises(GankitError, match=message):
        build_layers(specs, (1, 4, 4), 0)


def test_generator_output_must_match():
    cfg = C.build(None, overrides=["model.g.arch='layers'", "model.g.layers=['dense 784', 'reshape 1 28 28']"])
    with pytest.raises(GankitError, match="last layer is Reshape"):
        build_nets(cfg.model, image_shape=(1, 28, 28), num_classes=10)


@pytest.mark.parametrize("arch", registry.names("discriminator"))
def test_packed_discriminator_judges_groups(arch):
    """PacGAN: one logit per group of `pack` consecutive images, stacked on the channel axis."""
    torch.manual_seed(0)
    _, D = _nets(arch, (3, 8, 8), extra=["model.pack=2"])
    D.eval()  # batch norm (if any) in eval mode, so a group's logit depends on that group only
    x = torch.randn(6, 3, 8, 8)
    with torch.no_grad():
        out = D(x)
        assert out.shape == (3,)
        # images 2k and 2k+1 are group k's six channels
        assert torch.equal(out, D.net(x.reshape(3, 6, 8, 8)))
        changed = x.clone()
        changed[3] += 1.0  # the second image of group 1
        diff = (D(changed) - out).abs()
    assert diff[1] > 0 and diff[0] == 0 and diff[2] == 0
    with pytest.raises(ValueError, match="multiple of 2"):
        D(x[:5])


def test_packed_dry_run_table():
    cfg = C.build("mnist-best", overrides=[*UNCLUSTERED, "model.pack=4", "model.g.width=8", "model.d.width=8"])
    _, D = build_nets(cfg.model, image_shape=(1, 28, 28), num_classes=10)
    table, total, _ = layer_table(D, torch.zeros(8, 1, 28, 28), None)
    assert "(2, 4, 28, 28)" not in table and "(2, 8, 14, 14)" in table  # 8 images -> 2 groups of 4
    assert D.net.features[0].weight.shape[1] == 4  # D's first conv takes 4 stacked grey images


@pytest.mark.parametrize("out_channels", [1, 3])
def test_to_image_matches_the_plain_transposed_convolution(out_channels):
    """The DCGAN generator's last layer (one product + fold for grey images on a CPU) computes what
    ConvTranspose2d computes, forward and backward, with the same parameters."""
    torch.manual_seed(0)
    plain = nn.ConvTranspose2d(8, out_channels, 4, 2, 1)
    fast = ToImage(8, out_channels, 4, 2, 1)
    fast.load_state_dict(plain.state_dict())
    x = torch.randn(5, 8, 7, 7, requires_grad=True)
    a, b = plain(x), fast(x)
    assert b.shape == (5, out_channels, 14, 14)
    torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(a)
    ga = torch.autograd.grad(a, [x, plain.weight, plain.bias], g)
    gb = torch.autograd.grad(b, [x, fast.weight, fast.bias], g)
    for u, v in zip(ga, gb):
        torch.testing.assert_close(v, u, rtol=1e-4, atol=1e-4)
    assert fast._folds(x) == (out_channels == 1)
    # bf16 autocast and channels_last (the AMX fast path) run PyTorch's kernel, faster there
    assert not fast._folds(x.detach().contiguous(memory_format=torch.channels_last))
    assert not fast._folds(x.detach().bfloat16())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not fast._folds(x)


CL = torch.channels_last


def test_flatten_hands_a_channels_last_input_its_gradient_channels_last():
    """gankit's Flatten gives nn.Flatten's values and gradients, but a channels_last input's gradient
    comes back channels_last (so the activation before it runs its fast backward), to second order
    too (R1 and WGAN-GP differentiate D's gradient)."""
    torch.manual_seed(0)
    x = torch.randn(3, 4, 5, 5).contiguous(memory_format=CL).requires_grad_(True)
    w = torch.randn(100)
    ref_out = nn.Flatten()(x)
    out = Flatten()(x)
    assert out.shape == (3, 100) and out.is_contiguous()
    torch.testing.assert_close(out, ref_out, rtol=0, atol=0)
    (g,) = torch.autograd.grad((out * w).sum(), x, create_graph=True)
    (g_ref,) = torch.autograd.grad((ref_out * w).sum(), x, create_graph=True)
    torch.testing.assert_close(g, g_ref, rtol=0, atol=0)
    assert g.is_contiguous(memory_format=CL) and not g.is_contiguous()
    y = torch.nn.functional.leaky_relu(x, 0.2)  # second order through a non-linear layer, as in R1
    (g2,) = torch.autograd.grad((Flatten()(y) ** 2 @ w).sum(), x, create_graph=True)
    (g2_ref,) = torch.autograd.grad((nn.Flatten()(y) ** 2 @ w).sum(), x, create_graph=True)
    torch.testing.assert_close(torch.autograd.grad(g2.square().sum(), x, retain_graph=True)[0],
                               torch.autograd.grad(g2_ref.square().sum(), x)[0])
    plain = torch.randn(3, 4, 5, 5)  # contiguous inputs take nn.Flatten's own path
    assert Flatten()(plain).data_ptr() == plain.data_ptr()


def test_flatten_of_channels_last_breaks_a_compiled_graph_on_a_cpu():
    """On a CPU, torch.compile runs the channels_last flatten eagerly between two graphs (inductor fused it
    into slow scalar code); a contiguous input stays inside one graph."""
    flat = Flatten()

    def f(x: torch.Tensor) -> torch.Tensor:
        return flat(x * 2) + 1

    x = torch.randn(2, 3, 4, 4)
    torch._dynamo.reset()
    plain = torch._dynamo.explain(f)(x)
    assert (plain.graph_count, plain.graph_break_count) == (1, 0)
    cl = torch._dynamo.explain(f)(x.contiguous(memory_format=CL))
    assert (cl.graph_count, cl.graph_break_count) == (2, 1)


def test_reshape_lays_images_out_channels_last_when_its_net_is():
    flat = torch.randn(2, 12)
    r = Reshape(3, 2, 2)
    assert r(flat).is_contiguous()
    r.channels_last = True
    out = r(flat)
    assert out.is_contiguous(memory_format=CL) and not out.is_contiguous()
    torch.testing.assert_close(out, flat.view(2, 3, 2, 2), rtol=0, atol=0)
    assert Reshape(12)(flat).shape == (2, 12)  # flat targets are left alone


@pytest.mark.parametrize("arch", ["dcgan", "resnet"])
def test_channels_last_nets_keep_one_layout_and_compute_the_same(arch):
    """Under the fast path's channels_last, G's reshape to an image follows the weights, and both nets
    give the contiguous nets' outputs and gradients."""
    G, D = _nets(arch, (1, 28, 28), conditional=True)
    G2, D2 = _nets(arch, (1, 28, 28), conditional=True)
    G2.load_state_dict(G.state_dict())
    D2.load_state_dict(D.state_dict())
    fp = speed.FastPath(device=torch.device("cpu"), channels_last=True)
    fp.prepare(G2)
    fp.prepare(D2)
    assert all(m.channels_last for m in G2.modules() if isinstance(m, Reshape))
    z, y = torch.randn(4, 5), torch.tensor([0, 1, 2, 3])
    G.eval(), G2.eval(), D.eval(), D2.eval()  # spectral norm's vectors stay put, so the two pairs stay equal
    a, b = G(z, y), G2(z, y)
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
    xa = a.detach().requires_grad_(True)
    xb = fp.images(b.detach()).requires_grad_(True)
    da, db = D(xa, y), D2(xb, y)
    torch.testing.assert_close(db, da, rtol=1e-4, atol=1e-5)
    (ga,) = torch.autograd.grad(da.sum(), xa)
    (gb,) = torch.autograd.grad(db.sum(), xb)
    torch.testing.assert_close(gb, ga, rtol=1e-4, atol=1e-5)


def test_projection_head_logit_stays_fp32_under_cpu_autocast():
    """The head's one-output product runs in fp32 on a CPU under bf16 autocast (bf16 only slows a
    matrix-vector product there): the logit matches fp32 to fp32 rounding, not bf16's."""
    torch.manual_seed(0)
    head = ProjectionHead(256, 0)
    h = torch.randn(8, 256)
    ref = head(h)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = head(h)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("k, s", [(5, 1), (4, 2), (5, 2), (3, 2)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_same_transposed_conv_gives_a_dense_output_equal_to_the_cropped_full_one(k, s, channels_last):
    """Even crops run as PyTorch's symmetric padding, odd ones are cropped and copied out: either way
    the values are the cropped full output's, and the tensor is dense in the input's layout (a strided
    view sent batch norm after it down PyTorch's slow path)."""
    torch.manual_seed(0)
    convT = ConvTranspose2dSame(4, 3, k, s)
    x = torch.randn(2, 4, 7, 7)
    if channels_last:
        convT.to(memory_format=CL)
        x = x.contiguous(memory_format=CL)
    full = nn.ConvTranspose2d.forward(convT, x)
    top, left = (full.shape[-2] - 7 * s) // 2, (full.shape[-1] - 7 * s) // 2
    out = convT(x)
    torch.testing.assert_close(out, full[..., top : top + 7 * s, left : left + 7 * s], rtol=1e-5, atol=1e-5)
    assert out.is_contiguous(memory_format=CL if channels_last else torch.contiguous_format)


@pytest.mark.parametrize("make", [lambda: torch.nn.Linear(30, 20), lambda: torch.nn.Conv2d(3, 8, 4, 2, 1),
                                  lambda: torch.nn.ConvTranspose2d(8, 4, 4, 2, 1)], ids=["linear", "conv", "convT"])
def test_spectral_norm_matches_pytorchs_bit_for_bit(make):
    """gankit's leaner power iteration: the same vectors, weights and gradients as PyTorch's own."""
    from torch.nn.utils.parametrizations import spectral_norm as torch_sn

    from gankit.nets.conditional import SpectralNorm, has_spectral_norm, spectral_norm

    torch.manual_seed(0)
    base = make()
    ours, theirs = copy.deepcopy(base), copy.deepcopy(base)
    torch.manual_seed(1)  # the vectors' random start
    spectral_norm(ours)
    torch.manual_seed(1)
    torch_sn(theirs)
    assert isinstance(ours.parametrizations.weight[0], SpectralNorm) and has_spectral_norm(ours)
    assert has_spectral_norm(theirs)  # a checkpoint's nets made by PyTorch's own count too
    x = torch.randn(5, *((30,) if isinstance(base, torch.nn.Linear) else (base.in_channels, 8, 8)))
    for training in (True, True, False, True):
        ours.train(training)
        theirs.train(training)
        a, b = ours(x), theirs(x)
        a.square().sum().backward()
        b.square().sum().backward()
        assert torch.equal(a, b)
        for k, v in theirs.state_dict().items():
            assert torch.equal(ours.state_dict()[k], v), k
        assert torch.equal(ours.parametrizations.weight.original.grad, theirs.parametrizations.weight.original.grad)
