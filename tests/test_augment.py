import pytest
import torch

from gankit import registry
from gankit.augment import cutout, diff_augment, parse_policy, translation
from gankit.errors import GankitError


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", registry.names("augment"))
@pytest.mark.parametrize("shape", [(4, 1, 28, 28), (3, 3, 32, 32)])
def test_every_augmentation_keeps_shape_is_seeded_and_differentiable(name, shape):
    x = torch.rand(shape) * 2 - 1
    a, b = diff_augment(x, (name,), _gen(1)), diff_augment(x, (name,), _gen(1))
    assert a.shape == x.shape and torch.equal(a, b)  # same generator state: same transforms
    assert not torch.equal(a, diff_augment(x, (name,), _gen(2)))  # another seed: other transforms
    assert not torch.equal(a, x)
    xg = x.clone().requires_grad_(True)
    diff_augment(xg, (name,), _gen(1)).pow(2).sum().backward()  # G learns through the augmentation
    assert xg.grad is not None and xg.grad.abs().sum() > 0


def test_translation_moves_images_by_whole_pixels_within_an_eighth():
    x = torch.arange(1, 2 * 16 * 16 + 1, dtype=torch.float).view(2, 1, 16, 16)  # every pixel distinct
    out = translation(x, _gen(3))
    for i in range(2):
        found = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                 if torch.equal(out[i], torch.roll(torch.nn.functional.pad(x[i], (2, 2, 2, 2)), (dy, dx), (1, 2))
                                [:, 2:18, 2:18])]
        assert len(found) == 1  # exactly one shift of at most 16/8 = 2 pixels, zero-filled


def _shifted(x, dy, dx, sh, sw):
    """Reference: image ``x`` [C, H, W] moved by (dy, dx), zero-filled, by slicing a padded copy."""
    _, h, w = x.shape
    return torch.nn.functional.pad(x, (sw, sw, sh, sh))[:, sh - dy: sh - dy + h, sw - dx: sw - dx + w]


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("shape", [(6, 3, 12, 12), (1, 1, 10, 20), (2, 3, 20, 10)])
def test_translation_matches_slicing_in_either_layout_and_keeps_it(channels_last, shape):
    n, _, h, w = shape
    sh, sw = int(h * 0.125 + 0.5), int(w * 0.125 + 0.5)  # up to an eighth of each side: 1 and 3 at 10x20
    x = torch.randn(shape)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    xg = x.clone().requires_grad_(True)
    out = translation(xg, _gen(5))
    g = _gen(5)  # the same draws: dy for every image, then dx
    dy, dx = torch.randint(-sh, sh + 1, (n,), generator=g), torch.randint(-sw, sw + 1, (n,), generator=g)

    def reference(images):
        return torch.stack([_shifted(images[i], int(dy[i]), int(dx[i]), sh, sw) for i in range(n)])

    assert torch.equal(out, reference(x))
    assert out.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    weights = torch.randn_like(out)
    (out * weights).sum().backward()  # each input pixel gets the weight of the output pixel it moved to
    xr = x.clone().requires_grad_(True)
    (reference(xr) * weights).sum().backward()
    assert torch.equal(xg.grad, xr.grad)


def test_cutout_zeroes_one_square_of_half_the_side():
    x = torch.ones(200, 1, 16, 16)
    out = cutout(x, _gen(4))
    zeros = (out == 0).flatten(1).sum(1)
    assert zeros.max() == 64 and zeros.min() > 0  # 8x8 when inside, less where it hangs over the edge
    assert ((out == 0) | (out == 1)).all()


def test_colour_is_an_affine_map_per_grey_image():
    """For one channel, brightness, saturation (a no-op) and contrast make x -> a x + b per image."""
    x = torch.rand(5, 1, 8, 8)
    out = diff_augment(x, ("color",), _gen(5))
    for i in range(5):
        xi, yi = x[i].flatten(), out[i].flatten()
        a = ((xi - xi.mean()) * (yi - yi.mean())).sum() / (xi - xi.mean()).pow(2).sum()
        assert torch.allclose(yi, a * (xi - xi.mean()) + yi.mean(), atol=1e-5)


def test_policy_parsing():
    assert parse_policy("translation, cutout,color") == ("translation", "cutout", "color")
    assert parse_policy("") == ()
    with pytest.raises(GankitError, match="unknown augmentation 'colour'.*did you mean 'color'"):
        parse_policy("translation,colour")


def test_images_in_another_range_are_augmented_as_in_minus_one_to_one():
    """DiffAugment's constants are for [-1, 1]: its fills of 0 are mid-grey. A sigmoid G's [0, 1] images got
    black fills and a brightness shift of up to a whole half of their range."""
    white = torch.ones(64, 1, 16, 16)  # white in [0, 1]
    out = diff_augment(white, ("cutout", "translation"), torch.Generator().manual_seed(0), value_range=(0.0, 1.0))
    assert set(out.unique().tolist()) == {0.5, 1.0}  # filled with mid-grey, not 0
    shifted = diff_augment(white * 0.5, ("color",), torch.Generator().manual_seed(0), value_range=(0.0, 1.0))
    same = diff_augment(torch.zeros(64, 1, 16, 16), ("color",), torch.Generator().manual_seed(0))
    torch.testing.assert_close(shifted, (same + 1) / 2)  # the same transform, mapped to [0, 1]
    assert shifted.min() >= 0.25 - 1e-6 and shifted.max() <= 0.75 + 1e-6  # brightness at most a quarter
