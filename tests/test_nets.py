import pytest
import torch

from gankit import config as C
from gankit import registry
from gankit.errors import GankitError
from gankit.nets import build_nets, layer_table
from gankit.nets.layers import Conv2dSame, ConvTranspose2dSame
from gankit.nets.sequential import build_layers

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


@pytest.mark.parametrize("arch", registry.names("generator"))
@pytest.mark.parametrize("conditional", [False, True])
def test_generators_and_discriminators(arch, conditional):
    layers = {"layers": {"g": ["dense 64", "relu", "reshape 4 4 4", "up 2", "convT 3 3 pad=same", "tanh"],
                         "d": ["conv 8 3 s=2 pad=same", "lrelu 0.2", "flatten", "label", "dense 1"]}}
    params = {"g": {"layers": layers[arch]["g"]}, "d": {"layers": layers[arch]["d"]}} if arch in layers else {
        "g": {"hidden": [16]}, "d": {"hidden": [16]}}
    cfg = C.build(None, overrides=[f"model.g.arch='{arch}'", f"model.d.arch='{arch}'",
                                   f"model.conditional={str(conditional).lower()}", "model.latent_dim=5"])
    cfg.model.g.params, cfg.model.d.params = params["g"], params["d"]
    G, D = build_nets(cfg.model, image_shape=(3, 8, 8), num_classes=4)
    y = torch.tensor([0, 3]) if conditional else None
    x = G(torch.randn(2, 5), y)
    assert x.shape == (2, 3, 8, 8) and x.min() >= -1 and x.max() <= 1
    assert D(x, y).shape == (2,)
    if conditional:  # label mixtures (seed 003's interpolation) are accepted too
        mix = torch.tensor([[0.5, 0.5, 0, 0], [0, 0, 0.2, 0.8]])
        assert G(torch.randn(2, 5), mix).shape == (2, 3, 8, 8)


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
])
def test_layer_spec_errors(specs, message):
    with pytest.raises(GankitError, match=message):
        build_layers(specs, (1, 4, 4), 0)


def test_generator_output_must_match():
    cfg = C.build(None, overrides=["model.g.arch='layers'", "model.g.layers=['dense 784', 'reshape 1 28 28']"])
    with pytest.raises(GankitError, match="last layer is Reshape"):
        build_nets(cfg.model, image_shape=(1, 28, 28), num_classes=10)
