"""gankit.optim: Keras' clipvalue and decay, and optimizer state that resumes exactly in any memory layout."""

import pytest
import torch

from gankit.config import OptimConfig
from gankit.optim import Optim, match_layouts, scheduled_lr


def test_clip_value_bounds_every_gradient_element():
    p = torch.nn.Parameter(torch.zeros(4))
    opt = Optim([p], OptimConfig(name="sgd", lr=1.0, clip_value=0.5))
    p.grad = torch.tensor([-3.0, -0.2, 0.2, 3.0])
    opt.step()
    assert torch.equal(p.detach(), torch.tensor([0.5, 0.2, -0.2, -0.5]))


def test_keras_time_decay_and_lr_scale():
    p = torch.nn.Parameter(torch.zeros(2))
    opt = Optim([p], OptimConfig(name="rmsprop", lr=8e-4, decay=6e-8))
    for _ in range(1000):
        p.grad = torch.ones(2)
        opt.step()
    assert opt.lr == pytest.approx(8e-4 / (1 + 6e-8 * 1000))
    opt.set_lr_scale(0.5)
    assert opt.lr == pytest.approx(0.5 * 8e-4 / (1 + 6e-8 * 1000))


def test_linear_decay_ramps_down_between_its_steps_and_holds():
    cfg = OptimConfig(lr=1e-3, linear_decay=[100, 300], lr_final=0.1)
    assert [scheduled_lr(cfg, i) for i in (0, 100)] == [1e-3, 1e-3]
    assert scheduled_lr(cfg, 200) == pytest.approx(0.55e-3)
    assert scheduled_lr(cfg, 300) == pytest.approx(1e-4)
    assert scheduled_lr(cfg, 10_000) == pytest.approx(1e-4)
    both = OptimConfig(lr=1e-3, decay=1e-2, linear_decay=[0, 100])  # Keras' decay times the ramp
    assert scheduled_lr(both, 50) == pytest.approx(1e-3 / 1.5 * 0.5)


def test_linear_decay_in_the_optimizer_and_after_a_resume():
    cfg = OptimConfig(name="adam", lr=1e-3, linear_decay=[2, 6])
    p = torch.nn.Parameter(torch.zeros(3))
    opt = Optim([p], cfg)
    lrs = []
    for _ in range(8):
        lrs.append(opt.lr)
        p.grad = torch.ones(3)
        opt.step()
    assert lrs == pytest.approx([1e-3, 1e-3, 1e-3, 0.75e-3, 0.5e-3, 0.25e-3, 0.0, 0.0])
    state = opt.state_dict()
    resumed = Optim([torch.nn.Parameter(torch.zeros(3))], OptimConfig(name="adam", lr=1e-3, linear_decay=[4, 12]))
    resumed.load_state_dict(state)  # a ramp set on --resume applies from the saved step count on
    assert resumed.lr == pytest.approx(0.5e-3)


@pytest.mark.parametrize("name", ["adam", "rmsprop", "sgd"])
def test_resumed_channels_last_state_steps_like_the_uninterrupted_one(name):
    """A checkpoint's state is contiguous; loaded next to a channels_last weight it must still step right.

    Without ``match_layouts`` PyTorch's fused CPU Adam pairs the wrong elements of weight and moments
    (the resumed weights differed by up to 1e-2 after one step of lr 1e-2).
    """
    gen = torch.Generator().manual_seed(0)
    w0 = torch.randn(8, 4, 3, 3, generator=gen).contiguous(memory_format=torch.channels_last)
    grads = [torch.randn(8, 4, 3, 3, generator=gen).contiguous(memory_format=torch.channels_last) for _ in range(3)]
    cfg = OptimConfig(name=name, lr=1e-2, momentum=0.9 if name != "adam" else 0.0)

    def run(stop_after: int | None) -> torch.Tensor:
        p = torch.nn.Parameter(w0.clone(memory_format=torch.channels_last))
        opt = Optim([p], cfg)
        for i, g in enumerate(grads):
            if i == stop_after:  # a checkpoint holds contiguous copies (safetensors)
                saved = opt.state_dict()
                for st in saved["opt"]["state"].values():
                    for k, v in st.items():
                        st[k] = v.contiguous() if v.dim() == 4 else v
                opt = Optim([p], cfg)
                opt.load_state_dict(saved)
                assert all(v.stride() == p.stride() for v in opt.opt.state[p].values() if v.dim() == 4)
            p.grad = g.clone(memory_format=torch.channels_last)
            opt.step()
        return p.detach()

    assert torch.equal(run(None), run(1))


def test_match_layouts_leaves_matching_state_alone():
    p = torch.nn.Parameter(torch.zeros(2, 3))
    opt = torch.optim.Adam([p])
    p.grad = torch.ones(2, 3)
    opt.step()
    before = opt.state[p]["exp_avg"]
    match_layouts(opt)
    assert opt.state[p]["exp_avg"] is before
