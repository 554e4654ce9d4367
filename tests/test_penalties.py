import pytest
import torch
from safetensors.torch import load_file

from gankit.penalties import gradient_penalty, r1_penalty


def _linear_d(w: torch.Tensor, b: float = 0.3):
    return lambda x: (x.flatten(1) * w.flatten()).sum(1) + b  # D(x) = <w, x> + b, gradient w everywhere


def test_gradient_penalty_of_a_linear_critic():
    w = torch.zeros(1, 2, 3, 3)
    w[0, 0, 0, 0], w[0, 1, 2, 2] = 2.0, 2.0  # ||w|| = sqrt(8)
    real, fake = torch.randn(5, 2, 3, 3), torch.randn(5, 2, 3, 3)
    gp = gradient_penalty(_linear_d(w), real, fake)
    assert gp.item() == pytest.approx((8**0.5 - 1) ** 2, rel=1e-6)


def test_gradient_penalty_is_per_sample_over_c_h_w():
    """D(x) = ||x||^2 / 2 has gradient x: each sample's penalty is (||x_i||_2 - 1)^2 at its own interpolate."""
    real, fake = torch.randn(6, 3, 4, 4) * 2, torch.randn(6, 3, 4, 4)
    gp = gradient_penalty(lambda x: 0.5 * x.pow(2).flatten(1).sum(1), real, fake,
                          generator=torch.Generator().manual_seed(7))
    eps = torch.rand(6, 1, 1, 1, generator=torch.Generator().manual_seed(7))
    x_hat = eps * real + (1 - eps) * fake
    expected = (x_hat.flatten(1).norm(dim=1) - 1).pow(2).mean()
    assert gp.item() == pytest.approx(expected.item(), rel=1e-5)
    # a batch-wide norm would give a different number
    assert abs(gp.item() - (x_hat.norm() - 1).pow(2).item()) > 1.0


def test_gradient_penalty_trains_the_critic():
    """The penalty has a graph to D's weights: d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||."""
    w = torch.tensor([3.0, 4.0], requires_grad=True)
    gp = gradient_penalty(lambda x: x.flatten(1) @ w, torch.randn(4, 1, 1, 2), torch.randn(4, 1, 1, 2))
    gp.backward()
    assert torch.allclose(w.grad, 2 * (5 - 1) * w.detach() / 5)


def test_r1_of_a_linear_critic_and_a_quadratic_one():
    w = torch.tensor([1.0, -2.0, 0.5, 0.0]).view(1, 1, 2, 2)
    real = torch.randn(7, 1, 2, 2, requires_grad=True)
    assert r1_penalty(_linear_d(w)(real), real).item() == pytest.approx(5.25)  # ||w||^2
    real = torch.randn(7, 3, 2, 2, requires_grad=True)
    r1 = r1_penalty(0.5 * real.pow(2).flatten(1).sum(1), real)  # gradient x: mean of ||x_i||^2
    assert r1.item() == pytest.approx(real.detach().pow(2).sum().item() / 7, rel=1e-5)
    r1.backward()  # differentiable: d/dx mean ||x_i||^2 = 2 x / N
    assert torch.allclose(real.grad, 2 * real.detach() / 7)


def test_penalties_take_one_norm_per_group_of_a_packed_critic():
    """A packed D gives one logit per group of consecutive images: the norm runs over the whole group."""
    pack = 2

    def packed(x):  # D(group) = ||group||^2 / 2: the gradient is the group itself
        return 0.5 * x.reshape(len(x) // pack, -1).pow(2).sum(1)

    real = torch.randn(6, 1, 3, 3, requires_grad=True)
    r1 = r1_penalty(packed(real), real)
    assert r1.item() == pytest.approx(real.detach().pow(2).sum().item() / 3, rel=1e-5)  # mean over 3 groups
    fake = torch.randn(6, 1, 3, 3)
    gp = gradient_penalty(packed, real, fake, generator=torch.Generator().manual_seed(3), pack=pack)
    # one eps per group: each interpolate lies on the line between a real group and a fake group
    eps = torch.rand(3, 1, 1, 1, generator=torch.Generator().manual_seed(3)).repeat_interleave(pack, dim=0)
    x_hat = eps * real.detach() + (1 - eps) * fake
    expected = (x_hat.reshape(3, -1).norm(dim=1) - 1).pow(2).mean()
    assert gp.item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("penalty", ["loss.gp_weight=10.0", "loss.r1_gamma=5.0"])
def test_a_concatenated_d_batch_weighs_its_penalty_as_the_joint_update_does(penalty, tmp_path):
    """d_update = concat takes the mean over one batch of real and fake images: half the joint update's sum.
    The penalty was added unhalved, so gp_weight = 10 acted as 20. Now the whole loss is half the joint
    one, and with plain SGD D's first step moves exactly half as far."""
    from gankit import config as C
    from gankit.run import RunDir
    from gankit.train.loop import train
    from tests.helpers import tiny_overrides

    moved = {}
    for mode in ("joint", "concat"):
        cfg = C.build("seed002-mlp-mnist", overrides=[
            *tiny_overrides(1), "data.dataset='mnist-demo'", "model.g.hidden=[16]", "model.d.hidden=[16]",
            "loss.name='wasserstein'", f"loss.d_update='{mode}'", penalty, "train.checkpoint_every=1",
            "train.precision='fp32'"])  # exact halves: fp32 (auto is bf16 on an AVX512_BF16 CPU)
        train(cfg, tmp_path / mode, progress=False)
        run = RunDir(tmp_path / mode)
        start, end = (load_file(str(run.checkpoints / f"step-{s:08d}" / "weights.safetensors")) for s in (0, 1))
        moved[mode] = torch.cat([(end[k] - start[k]).flatten() for k in start if k.startswith("D.")])
    assert moved["joint"].abs().max() > 0
    torch.testing.assert_close(moved["concat"], 0.5 * moved["joint"], rtol=1e-4, atol=1e-7)


def test_a_penalty_with_batch_norm_in_d_is_refused(tmp_path):
    """Batch norm mixes the images of a batch, so each image's gradient is not its own (13.9% off on a
    DCGAN D with batch norm): training went on without a word."""
    from gankit import config as C
    from gankit.errors import GankitError
    from gankit.train.loop import train
    from tests.helpers import tiny_overrides

    cfg = C.build("mnist-best", overrides=[*tiny_overrides(1), "data.dataset='mnist-demo'", "model.clusters=0",
                                           "model.d.classifier=false", "model.g.label_input=false",
                                           "model.d.bn=true", "loss.r1_gamma=1.0"])
    with pytest.raises(GankitError, match="batch norm in D mixes the images"):
        train(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()  # refused before the run directory was made
