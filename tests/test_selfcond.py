"""Self-conditioning on k-means clusters (model.clusters): the pieces, and a run that stays unconditional."""

import shutil

import pytest
import torch
from safetensors.torch import load_file

from gankit import config as C
from gankit.errors import GankitError
from gankit.nets.selfcond import ClusterDiscriminator, ClusterGenerator, kmeans, nearest_centre
from gankit.run import RunDir, latest_good_checkpoint, read_stats
from gankit.sample import generate, load_generator
from gankit.train.loop import train
from tests.conftest import SHARED
from tests.helpers import tiny_config


def blobs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """300 points in three tight, well separated groups of 50, 100 and 150, and the groups' means."""
    g = torch.Generator().manual_seed(seed)
    means = torch.tensor([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [0.0, 10.0, 5.0]])
    sizes = (50, 100, 150)
    x = torch.cat([m + 0.1 * torch.randn(n, 3, generator=g) for m, n in zip(means, sizes)])
    return x[torch.randperm(len(x), generator=g)], means


def test_kmeans_finds_separated_groups_and_is_deterministic():
    x, means = blobs()
    c = kmeans(x, 3, seed=1)
    assert torch.cdist(means, c).min(1).values.max() < 0.05  # every group's mean has a centre on it
    assert torch.equal(c, kmeans(x, 3, seed=1))
    assert sorted(torch.bincount(nearest_centre(x, c)).tolist()) == [50, 100, 150]
    with pytest.raises(ValueError, match="cannot make 4 clusters of 3 points"):
        kmeans(x[:3], 4)


def test_cluster_generator_draws_clusters_by_size_from_its_noise():
    calls = []

    class Net(torch.nn.Module):
        def forward(self, z, labels):
            calls.append(labels)
            return z[:, :1]

    G = ClusterGenerator(Net(), 3, noise="normal")
    G.set_sizes(torch.tensor([50, 100, 150]))
    z = torch.randn(60_000, 4, generator=torch.Generator().manual_seed(0))
    y = G.labels_for(z)
    assert torch.allclose(torch.bincount(y, minlength=3) / len(y), torch.tensor([1 / 6, 1 / 3, 1 / 2]), atol=0.01)
    assert torch.equal(y, G.labels_for(z.clone()))  # a pure function of z
    G(z[:5])
    assert torch.equal(calls[-1], y[:5])  # no labels: its own
    G(z[:5], torch.tensor([2, 2, 2, 2, 2]))
    assert calls[-1].tolist() == [2] * 5  # given labels win (training feeds the real batch's clusters)
    U = ClusterGenerator(Net(), 3, noise="uniform")
    U.set_sizes(torch.tensor([1, 1, 2]))
    assert U.labels_for(torch.tensor([[-1.0], [-0.6], [-0.2], [0.1], [1.0]])).tolist() == [0, 0, 1, 2, 2]


def test_cluster_discriminator_judges_unlabelled_images_as_their_nearest_cluster():
    seen = []

    class Net(torch.nn.Module):
        def forward(self, x, labels):
            seen.append(labels)
            return x.flatten(1).sum(1)

    D = ClusterDiscriminator(Net(), 2, features=4)
    D.centres.copy_(torch.tensor([[0.0] * 4, [1.0] * 4]))
    x = torch.tensor([0.9, 0.1, 0.8]).view(3, 1, 1, 1).expand(3, 1, 2, 2)
    D(x)
    assert seen[-1].tolist() == [1, 0, 1]


def test_config_errors():
    for overrides, message in [
        (["model.clusters=-1"], "model.clusters must be >= 0"),
        (["model.clusters=1"], "one cluster is no conditioning"),
        (["model.clusters=5", "model.conditional=true"], "for unconditional models"),
        (["model.clusters=5", "model.pack=2"], "do not combine"),
    ]:
        with pytest.raises(GankitError, match=message):
            C.build("mnist-best", overrides=overrides)


TINY = ["model.g.width=8", "model.d.width=8", "model.ema=0.9", "model.clusters=4",
        "train.checkpoint_every=4", "train.log_every=2"]


def test_self_conditioned_run_resumes_exactly_and_samples_unconditionally(tmp_path):
    cfg = tiny_config("mnist-best", SHARED, steps=8, extra=TINY)
    train(cfg, tmp_path / "a", progress=False)
    train(cfg, tmp_path / "b", progress=False)
    shutil.rmtree(tmp_path / "b" / "checkpoints" / "step-00000008")
    train(cfg, tmp_path / "b", resume=True, progress=False)  # from step 4: centres and sizes from the checkpoint
    wa = load_file(str(latest_good_checkpoint(RunDir(tmp_path / "a")) / "weights.safetensors"))
    wb = load_file(str(latest_good_checkpoint(RunDir(tmp_path / "b")) / "weights.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert wa["D.centres"].shape == (4, 28 * 28) and wa["D.centres"].abs().sum() > 0
    cdf = wa["G_ema.cdf"]
    assert torch.equal(cdf, wa["G.cdf"]) and cdf[-1].item() == pytest.approx(1.0) and (cdf.diff() > 0).all()
    stats = read_stats(RunDir(tmp_path / "a"), "train")
    assert all("d_cls" in r and "g_cls" in r for r in stats)  # D's class head learns the clusters, G is asked for them
    lg = load_generator(tmp_path / "a")
    images, labels, _ = generate(lg, 12, seed=3)
    assert images.shape == (12, 1, 28, 28) and images.dtype == torch.uint8 and labels is None
    assert torch.equal(images, generate(lg, 12, seed=3)[0])
    with pytest.raises(GankitError, match="not conditional"):
        generate(lg, 4, labels=torch.zeros(4, dtype=torch.long))


def test_more_clusters_than_images_is_a_clear_error(tmp_path):
    cfg = tiny_config("mnist-best", SHARED, steps=2, extra=[*TINY, "model.clusters=300"])
    with pytest.raises(GankitError, match="model.clusters = 300 but the dataset has only 256 images"):
        train(cfg, tmp_path / "run", progress=False)
