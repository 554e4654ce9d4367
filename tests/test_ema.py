import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from gankit.run import RunDir, latest_good_checkpoint
from gankit.sample import load_generator
from gankit.train.ema import EMA, ramped_decay
from gankit.train.loop import train
from tests.conftest import SHARED
from tests.helpers import tiny_config


def test_ema_update_math_and_buffers():
    G = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    with torch.no_grad():
        G[0].weight.fill_(1.0)
    ema = EMA(G, decay=0.9, start=2)
    with torch.no_grad():
        G[0].weight.fill_(3.0)
    G[1].running_mean.fill_(5.0)
    ema.update(G, step=1)  # before start: a copy
    assert torch.equal(ema.model[0].weight, G[0].weight)
    with torch.no_grad():
        G[0].weight.fill_(13.0)
    ema.update(G, step=2)  # 0.9 * 3 + 0.1 * 13
    assert torch.allclose(ema.model[0].weight, torch.full((2, 2), 4.0))
    assert torch.equal(ema.model[1].running_mean, G[1].running_mean)  # buffers are copied, not averaged
    assert not any(p.requires_grad for p in ema.model.parameters()) and not ema.model.training
    with pytest.raises(ValueError, match="decay"):
        EMA(G, decay=1.0)


def test_ramped_decay_lengthens_the_average_up_to_the_cap():
    # half-life = min(0.05 x step, 693): 5 steps at step 100, 50 at step 1,000, the cap (0.999's) from 13,863 on
    assert ramped_decay(0.999, 100, 0.05) == pytest.approx(0.5 ** (1 / 5))
    assert ramped_decay(0.999, 1000, 0.05) == pytest.approx(0.5 ** (1 / 50))
    assert ramped_decay(0.999, 20_000, 0.05) == pytest.approx(0.999)
    assert ramped_decay(0.999, 5, 0.0) == 0.999  # off
    decays = [ramped_decay(0.99, s, 0.1) for s in range(0, 2000, 50)]
    assert decays == sorted(decays) and decays[0] < 0.01 and decays[-1] == pytest.approx(0.99)
    G = nn.Linear(1, 1)
    ema = EMA(G, decay=0.999, rampup=0.05)
    with torch.no_grad():
        G.weight.fill_(2.0)
        ema.model.weight.fill_(0.0)
    ema.update(G, step=100)  # decay 0.5 ** (1/5) = 0.8706 this step
    assert ema.model.weight.item() == pytest.approx(2.0 * (1 - 0.5 ** 0.2))
    with pytest.raises(ValueError, match="rampup"):
        EMA(G, decay=0.9, rampup=-1)


# mnist-best (dcgan nets, spectral norm in D, hinge, G_ema) with tiny nets, a fast EMA and DiffAugment
MODERN = ["model.g.width=8", "model.d.width=8", "model.ema=0.9", "model.ema_start=0",
          "train.augment='translation,cutout,color'"]


def test_run_keeps_g_ema_and_samples_it_by_default(tmp_path):
    cfg = tiny_config("mnist-best", SHARED, steps=6, extra=MODERN)
    train(cfg, tmp_path / "run", progress=False)
    w = load_file(str(latest_good_checkpoint(RunDir(tmp_path / "run")) / "weights.safetensors"))
    g = {k[2:]: v for k, v in w.items() if k.startswith("G.")}
    e = {k[6:]: v for k, v in w.items() if k.startswith("G_ema.")}
    assert g.keys() == e.keys() and any(not torch.equal(g[k], e[k]) for k in g)
    lg, raw = load_generator(tmp_path / "run"), load_generator(tmp_path / "run", ema=False)
    assert (lg.weights, raw.weights) == ("G_ema", "G")
    fc = next(k for k in e if k.endswith("fc.weight"))  # (net.fc.weight in mnist-best's self-conditioned G)
    assert torch.equal(lg.G.state_dict()[fc], e[fc])
    assert torch.equal(raw.G.state_dict()[fc], g[fc])


@pytest.mark.parametrize("extra, logged", [
    (["model.ema_start=2", "loss.r1_gamma=1.0", "loss.r1_every=2"], "r1"),
    (["model.ema=0.99", "model.ema_rampup=0.5", "loss.r1_gamma=1.0"], "r1"),
    (["loss.topk=0.5", "loss.topk_gamma=0.01"], "topk"),  # top-k's share depends on the images seen
    (["loss.name='wasserstein'", "loss.gp_weight=10.0", "schedule.d_steps=2", "model.conditional=true",
      "model.clusters=0"], "gp"),
    (["model.conditional=true", "model.clusters=0"], "g_cls"),  # (the classifier and label input: mnist-best's)
])
def test_exact_resume_with_ema_augment_sn_and_penalties(tmp_path, extra, logged):
    cfg = tiny_config("mnist-best", SHARED, steps=8,
                      extra=[*MODERN, *extra, "train.checkpoint_every=4", "train.log_every=2"])
    train(cfg, tmp_path / "a", progress=False)
    train(cfg, tmp_path / "b", progress=False)
    import shutil

    shutil.rmtree(tmp_path / "b" / "checkpoints" / "step-00000008")
    train(cfg, tmp_path / "b", resume=True, progress=False)
    wa = load_file(str(latest_good_checkpoint(RunDir(tmp_path / "a")) / "weights.safetensors"))
    wb = load_file(str(latest_good_checkpoint(RunDir(tmp_path / "b")) / "weights.safetensors"))
    assert any(k.startswith("G_ema.") for k in wa) and any(k.endswith("._u") for k in wa)  # EMA and SN vectors
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    sa = (tmp_path / "a" / "stats.jsonl").read_text().splitlines()
    assert any(f'"{logged}"' in line for line in sa)


def test_sample_grids_show_g_ema(tmp_path):
    """The training loop's fixed-noise grid is drawn by G_ema (and differs from the raw G's)."""
    import numpy as np
    from PIL import Image

    from gankit.data import to_uint8
    from gankit.train.loop import fixed_inputs
    from gankit.viz.grid import default_scale, make_grid

    cfg = tiny_config("mnist-best", SHARED, steps=6, extra=MODERN)
    train(cfg, tmp_path / "run", progress=False)
    saved = np.asarray(Image.open(tmp_path / "run" / "samples" / "step-00000006.png"))

    def grid(lg):
        z, y = fixed_inputs(cfg, cfg.train.sample_grid, lg.info.num_classes, torch.device("cpu"))
        with torch.no_grad():
            return np.asarray(make_grid(to_uint8(lg.G(z, y)), scale=default_scale(lg.info.resolution)))

    assert np.array_equal(saved, grid(load_generator(tmp_path / "run")))
    assert not np.array_equal(saved, grid(load_generator(tmp_path / "run", ema=False)))
