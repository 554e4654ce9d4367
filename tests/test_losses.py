import math

import pytest
import torch

from gankit import config as C
from gankit import losses, registry
from gankit.losses import clip_bound, clipped_share, d_targets, keras_clipped, top_k, topk_fraction


def test_bce_matches_hand_computed():
    logits = torch.tensor([0.0, 2.0])
    # -log(sigmoid(0)) = log 2; -log(sigmoid(2)) = log(1 + e^-2)
    assert losses.d_bce_real(logits).item() == pytest.approx((math.log(2) + math.log1p(math.exp(-2))) / 2)
    assert losses.d_bce_fake(torch.tensor([0.0])).item() == pytest.approx(math.log(2))
    assert losses.g_bce(torch.tensor([-3.0])).item() == pytest.approx(math.log1p(math.exp(3)))


def test_bce_is_stable_for_huge_logits():
    big = torch.tensor([1e4, -1e4])
    assert torch.isfinite(losses.d_bce_real(big)) and losses.d_bce_real(big).item() == pytest.approx(5e3)


def test_hinge_wasserstein_lsgan_values():
    r, f = torch.tensor([0.5, 2.0]), torch.tensor([-2.0, 0.0])
    assert losses.d_hinge_real(r).item() == pytest.approx(0.25)
    assert losses.d_hinge_fake(f).item() == pytest.approx(0.5)
    assert losses.g_hinge(f).item() == pytest.approx(1.0)
    assert losses.d_wasserstein_real(r).item() == pytest.approx(-1.25)
    assert losses.d_wasserstein_fake(f).item() == pytest.approx(-1.0)
    assert losses.d_lsgan_real(r).item() == pytest.approx(0.5 * (0.25 + 1.0) / 2)
    assert losses.g_lsgan(f).item() == pytest.approx(0.5 * (9 + 1) / 2)


@pytest.mark.parametrize("name", registry.names("loss"))
def test_every_objective_pushes_the_right_way(name):
    obj = registry.get("loss", name)
    r = torch.full((4,), 0.5, requires_grad=True)  # scores where no objective is at its optimum
    f = torch.full((4,), 0.5, requires_grad=True)
    (obj.d_real(r) + obj.d_fake(f)).backward()
    assert (r.grad < 0).all() and (f.grad > 0).all()  # D raises real scores and lowers fake ones
    g = torch.full((4,), 0.5, requires_grad=True)
    obj.g(g).backward()
    assert (g.grad < 0).all()  # G raises the score of its fakes


def test_targets():
    assert d_targets(3, label=1.0, default=1.0, noise=0.0) is None
    assert torch.equal(d_targets(2, label=0.9, default=1.0, noise=0.0), torch.full((2,), 0.9))
    t = d_targets(1000, label=0.0, default=0.0, noise=0.05, generator=torch.Generator().manual_seed(0))
    assert 0 <= t.min() and t.max() < 0.05 and 0.02 < t.mean() < 0.03
    # swapped labels are passed on, not mistaken for the loss's own 0/1 targets
    assert torch.equal(d_targets(2, label=0.0, default=1.0, noise=0.0), torch.zeros(2))
    assert torch.equal(d_targets(2, label=1.0, default=0.0, noise=0.0), torch.ones(2))


def test_target_settings_need_a_loss_that_has_targets():
    from gankit.errors import GankitError

    with pytest.raises(GankitError, match="would do nothing"):
        C.build("seed001-dcgan-mnist", overrides=["loss.name='hinge'", "loss.real_label=0.9"])
    C.build("seed001-dcgan-mnist", overrides=["loss.name='bce'", "loss.real_label=0.9"])


def test_keras_clipping_bounds_the_loss_for_targets_above_one():
    """Seed 004's noisy targets reach 1.05: the pure logit form rewards ever larger real logits,
    Keras' probability clipping (eps 1e-7, logits +-16.118) stops both the loss and the gradient there."""
    bce = registry.get("loss", "bce")
    clipped = keras_clipped(bce, 1e-7)
    t = torch.full((1,), 1.05)
    plain = [bce.d_real(torch.tensor([x]), t).item() for x in (20.0, 100.0)]
    assert plain[1] < plain[0] - 3  # unbounded below: -0.05 x for large x
    x = torch.tensor([20.0, 100.0, 5.0], requires_grad=True)
    loss = clipped.d_real(x, torch.full((3,), 1.05))
    loss.backward()
    assert x.grad[0] == 0 and x.grad[1] == 0 and x.grad[2] != 0
    bound = math.log((1 - 1e-7) / 1e-7)
    assert abs(clipped.d_real(torch.tensor([bound]), t).item() - clipped.d_real(torch.tensor([1e3]), t).item()) < 1e-6
    # inside the bounds nothing changes, for every function of the objective
    y = torch.tensor([-3.0, 0.5, 7.0])
    assert torch.allclose(clipped.d_fake(y), bce.d_fake(y)) and torch.allclose(clipped.g(y), bce.g(y))
    with pytest.raises(ValueError, match="epsilon"):
        keras_clipped(bce, 0.0)
    # the share that got no gradient: the three beyond +-16.118, not the one at 5
    assert clipped_share(torch.tensor([20.0, 100.0, 5.0, -16.2]), 1e-7).item() == 0.75
    assert clip_bound(1e-7) == pytest.approx(bound)


def test_top_k_keeps_the_fakes_d_rates_most_real_and_only_they_get_gradients():
    logits = torch.tensor([0.3, -2.0, 1.5, 0.0, -0.5, 2.5], requires_grad=True)
    kept = top_k(logits, 0.5)
    assert sorted(kept.tolist()) == pytest.approx([0.3, 1.5, 2.5])
    losses.g_hinge(kept).backward()
    assert logits.grad.tolist() == pytest.approx([-1 / 3, 0, -1 / 3, 0, 0, -1 / 3])
    assert top_k(logits, 1.0) is logits and top_k(logits, 0.01).tolist() == [2.5]  # at least one
    assert len(top_k(logits, 0.34)) == 3  # ceil(0.34 x 6)


def test_topk_fraction_decays_per_epoch_to_its_floor():
    assert topk_fraction(0.0, nu=0.5, gamma=0.9) == 1.0
    assert topk_fraction(2.0, nu=0.5, gamma=0.9) == pytest.approx(0.81)
    assert topk_fraction(100.0, nu=0.5, gamma=0.9) == 0.5


def test_minimax_g_loss_saturates_where_the_non_saturating_one_does_not():
    """Why seed 003's preset trains G with `bce`: when D confidently rejects the fakes (logit -10),
    the printed minimax loss gives G almost no gradient, the non-saturating one a full one."""
    grads = {}
    for name in ("minimax", "bce"):
        x = torch.full((1,), -10.0, requires_grad=True)
        registry.get("loss", name).g(x).backward()
        grads[name] = -x.grad.item()  # how hard G is pushed to raise its fakes' score
    assert grads["minimax"] == pytest.approx(math.exp(-10) / (1 + math.exp(-10)))  # sigmoid(-10): 4.5e-5
    assert grads["bce"] == pytest.approx(1 / (1 + math.exp(-10)))  # 1 - sigmoid(-10)
    assert C.build("seed003-cgan-mnist").loss.name == "bce"
    assert C.build("seed003-cgan-mnist", overrides=["loss.name='minimax'"]).loss.name == "minimax"  # the printed loss


@pytest.mark.parametrize("name", registry.names("loss"))
def test_d_accuracy_splits_at_the_midpoint_of_each_objectives_targets(name):
    """D's accuracy (logged, and read by seed 000's adaptive balance) counts an output above the objective's
    threshold as 'real'. LSGAN's targets are 0 and 1: at the threshold 0 of logits, a D that gave fakes 0.3
    and reals 0.8 scored 0% on fakes and 'G fools D 100%' while it told every image apart."""
    from torch import nn

    from gankit.train.loop import _Probe

    obj = registry.get("loss", name)
    assert keras_clipped(obj, 1e-7).threshold == obj.threshold  # seed 001's clipping keeps it
    real_out, fake_out = (0.8, 0.3) if name == "lsgan" else (1.0, -1.0)

    class G(nn.Module):  # images of -1
        def forward(self, z, y=None):
            return -torch.ones(len(z), 4, 1, 1)

    class D(nn.Module):  # fake_out for G's images, real_out for the rest
        def forward(self, x, y=None):
            return torch.where(x.flatten(1)[:, 0] < 0, fake_out, real_out)

    probe = _Probe(G=G(), D=D(), objective=obj, make_noise=None, last_real=None,
                   val=(torch.ones(4, 4, 1, 1), None, torch.zeros(4, 2), None))
    m = probe._measure(torch.ones(4, 4, 1, 1), None, torch.zeros(4, 2), None)
    assert m["d_acc_real"] == m["d_acc_fake"] == m["d_acc"] == 1.0 and m["g_acc"] == 0.0
