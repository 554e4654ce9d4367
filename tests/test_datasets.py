import gzip
import hashlib
import io
import pickle
import shutil
import tarfile
import time

import numpy as np
import pytest
import torch

from gankit.data import cifar, describe, load_dataset
from gankit.data.sources import EMNIST_DOWNLOAD
from gankit.errors import GankitError
from tests.helpers import fake_mnist, write_idx_gz

# ---- MNIST-family on synthetic files ---------------------------------------------------------------------


def test_synthetic_mnist_layout(tmp_path):
    fake_mnist(tmp_path)
    ds = load_dataset("mnist", root=tmp_path, split="train+test", verify=False)
    assert ds.images.shape == (70, 1, 28, 28) and ds.images.dtype == torch.uint8
    assert ds.labels.dtype == torch.int64 and ds.info.num_classes == 10
    sub = load_dataset("mnist:3,7", root=tmp_path, verify=False)
    assert set(sub.labels.tolist()) == {3, 7}


def test_synthetic_files_fail_official_checksum(tmp_path):
    fake_mnist(tmp_path)
    with pytest.raises(GankitError, match="checksum mismatch"):
        load_dataset("mnist", root=tmp_path)


def test_count_mismatch_between_images_and_labels(tmp_path):
    fake_mnist(tmp_path)
    write_idx_gz(tmp_path / "mnist" / "train-labels-idx1-ubyte.gz", np.zeros(7, dtype=np.uint8))
    with pytest.raises(GankitError, match="50 images but .* 7 labels"):
        load_dataset("mnist", root=tmp_path, verify=False)


def test_label_out_of_range(tmp_path):
    fake_mnist(tmp_path)
    write_idx_gz(tmp_path / "mnist" / "train-labels-idx1-ubyte.gz", np.full(50, 12, dtype=np.uint8))
    with pytest.raises(GankitError, match="label 12 out of range"):
        load_dataset("mnist", root=tmp_path, verify=False)


def test_a_bad_label_in_the_test_split_names_the_test_label_file(tmp_path):
    fake_mnist(tmp_path)
    write_idx_gz(tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz", np.full(20, 12, dtype=np.uint8))
    with pytest.raises(GankitError, match="t10k-labels-idx1-ubyte.gz: label 12 out of range"):
        load_dataset("mnist", root=tmp_path, split="train+test", verify=False)


@pytest.mark.parametrize("cls", ["\u00b2", "\u0663"])  # a superscript two, an Arabic-Indic three
def test_a_class_written_in_other_digits_is_a_clear_error(cls):
    with pytest.raises(GankitError, match="has no class"):
        load_dataset(f"mnist-demo:{cls}")


def test_unknown_class_and_dataset():
    with pytest.raises(GankitError, match="did you mean 'mnist'"):
        load_dataset("mnsit")
    with pytest.raises(GankitError, match="no class 'shipp'.*did you mean 'ship'"):
        load_dataset("cifar10:shipp")


def test_demo_set_is_embedded():
    ds = load_dataset("mnist-demo", root="/nonexistent")
    assert len(ds) == 10_000 and ds.class_counts()[1] == 1135  # MNIST test split's count of ones


# ---- EMNIST: layout, orientation, labels, missing files ------------------------------------------------------


def _write_emnist(root, subset, upright, labels):
    # EMNIST stores each image transposed relative to MNIST.
    for part in ("train", "test"):
        write_idx_gz(root / "emnist" / f"emnist-{subset}-{part}-images-idx3-ubyte.gz", upright.transpose(0, 2, 1))
        write_idx_gz(root / "emnist" / f"emnist-{subset}-{part}-labels-idx1-ubyte.gz", labels)


def _letter_L() -> np.ndarray:
    img = np.zeros((28, 28), dtype=np.uint8)
    img[4:24, 6:9] = 255  # the upright stroke of an L, on the left
    img[21:24, 6:20] = 255  # its foot, at the bottom
    return img


def test_emnist_orientation_is_fixed(tmp_path):
    upright = np.stack([_letter_L()] * 3)
    _write_emnist(tmp_path, "letters", upright, np.array([12, 1, 26], dtype=np.uint8))
    ds = load_dataset("emnist-letters", root=tmp_path, verify=False)
    img = ds.images[0, 0].numpy()
    assert img[4:24, 6:9].min() == 255 and img[21:24, 6:20].min() == 255  # the L stands upright
    assert img[6:9, 4:24].sum() < img[4:24, 6:9].sum()  # not its transpose
    assert ds.labels.tolist() == [11, 0, 25] and ds.info.class_names[11] == "Ll"


def test_emnist_byclass_letters_view(tmp_path):
    imgs = np.zeros((4, 28, 28), dtype=np.uint8)
    _write_emnist(tmp_path, "byclass", imgs, np.array([3, 10, 35, 61], dtype=np.uint8))  # '3', 'A', 'Z', 'z'
    full = load_dataset("emnist-byclass", root=tmp_path, verify=False)
    assert full.info.num_classes == 62
    view = load_dataset("emnist-byclass-letters", root=tmp_path, verify=False)
    assert view.info.num_classes == 52 and len(view) == 3  # the digit is dropped
    assert [view.info.class_names[i] for i in view.labels.tolist()] == ["A", "Z", "z"]


def test_emnist_missing_gives_download(tmp_path):
    with pytest.raises(GankitError) as err:
        load_dataset("emnist-letters", root=tmp_path)
    assert EMNIST_DOWNLOAD in str(err.value) and "emnist-letters-train-images-idx3-ubyte.gz" in str(err.value)


def test_emnist_test_files_in_the_gzip_folder_serve_the_test_split(tmp_path):
    _write_emnist(tmp_path, "letters", np.stack([_letter_L()] * 3), np.array([12, 1, 26], dtype=np.uint8))
    gz = tmp_path / "emnist" / "gzip"
    gz.mkdir()
    for f in (tmp_path / "emnist").glob("emnist-letters-test-*"):
        f.rename(gz / f.name)
    for f in (tmp_path / "emnist").glob("emnist-letters-train-*"):
        f.unlink()
    assert len(load_dataset("emnist-letters", root=tmp_path, split="test", verify=False)) == 3
    with pytest.raises(GankitError, match="missing for the train split: emnist-letters-train-images"):
        load_dataset("emnist-letters", root=tmp_path, split="train", verify=False)


def test_emnist_labels_out_of_range_name_their_own_file(tmp_path):
    _write_emnist(tmp_path, "letters", np.stack([_letter_L()] * 3), np.array([12, 1, 26], dtype=np.uint8))
    write_idx_gz(tmp_path / "emnist" / "emnist-letters-test-labels-idx1-ubyte.gz", np.array([1, 2, 27], np.uint8))
    with pytest.raises(GankitError, match="letters-test-labels-idx1-ubyte.gz: EMNIST letters labels must be 1..26"):
        load_dataset("emnist-letters", root=tmp_path, split="train+test", verify=False)


# ---- CIFAR-10 python batches and the restricted unpickler ------------------------------------------------------


def _batch_bytes(n, labels, seed=0):
    rng = np.random.default_rng(seed)
    obj = {b"batch_label": b"x", b"labels": list(labels), b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
           b"filenames": [b"a.png"] * n}
    return pickle.dumps(obj, protocol=2)


def _write_cifar_archive(root, batches):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in batches.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    (root / "cifar10").mkdir(parents=True, exist_ok=True)
    (root / "cifar10" / "cifar-10-python.tar.gz").write_bytes(buf.getvalue())


def test_cifar_python_batches(tmp_path):
    batches = {f"data_batch_{i}": _batch_bytes(10, [i % 10] * 5 + [8] * 5, seed=i) for i in range(1, 6)}
    batches["test_batch"] = _batch_bytes(4, [8, 8, 1, 2])
    _write_cifar_archive(tmp_path, batches)
    ds = load_dataset("cifar10:ship", root=tmp_path, split="train+test", verify=False)
    assert len(ds) == 25 + 2 and set(ds.labels.tolist()) == {8}
    assert ds.images.shape[1:] == (3, 32, 32)
    first = np.frombuffer(pickle.loads(batches["data_batch_1"])[b"data"].tobytes(), np.uint8).reshape(10, 3, 32, 32)
    assert np.array_equal(ds.images[0].numpy(), first[5])  # order kept, channel-first layout
    with pytest.raises(GankitError, match="checksum mismatch with the official CIFAR-10"):
        load_dataset("cifar10", root=tmp_path)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_crafted_cifar_pickle_cannot_run_code(tmp_path):
    marker = tmp_path / "pwned"
    evil = pickle.dumps({b"data": _Evil(marker), b"labels": [0]}, protocol=2)
    folder = tmp_path / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]:
        (folder / name).write_bytes(evil)
    with pytest.raises(GankitError, match="refused"):
        load_dataset("cifar10", root=tmp_path, verify=False)
    assert not marker.exists()


@pytest.mark.parametrize("payload", [b"garbage", pickle.dumps([1, 2, 3]), pickle.dumps({"data": "x", "labels": []})])
def test_malformed_cifar_batch(payload):
    with pytest.raises(GankitError, match="not .*CIFAR|CIFAR 'data'"):
        cifar.parse_batch(payload, name="b")


def _py2_string(b):
    return b"U" + bytes([len(b)]) + b  # SHORT_BINSTRING: a Python 2 str, read back as bytes


def _py2_batch(images, labels, *, dtype_state=b"K\x00"):
    """A CIFAR batch pickled the way Python 2's cPickle (protocol 2) wrote the official files, by hand:
    str for every name and the array's bytes, numpy.core.multiarray._reconstruct, dtype state version 3."""
    n = len(images)
    array = (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + _py2_string(b"b") + b"\x87R"
             + b"(K\x01K" + bytes([n]) + b"M\x00\x0c\x86cnumpy\ndtype\n" + _py2_string(b"u1") + b"K\x00K\x01\x87R"
             + b"(K\x03" + _py2_string(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xff" + dtype_state + b"tb\x89"
             + b"T" + len(images.tobytes()).to_bytes(4, "little") + images.tobytes() + b"tb")
    return (b"\x80\x02}(" + _py2_string(b"data") + array + _py2_string(b"labels") + b"]("
            + b"".join(b"K" + bytes([v]) for v in labels) + b"eu.")


def test_python2_cifar_pickle_loads():
    """The official files are Python 2 pickles: bytes names, str data, the old module path of numpy."""
    images = np.random.default_rng(1).integers(0, 256, (3, 3072), dtype=np.uint8)
    out, labels = cifar.parse_batch(_py2_batch(images, [8, 0, 9]), name="b")
    assert np.array_equal(out.reshape(3, 3072), images) and labels.tolist() == [8, 0, 9]


def test_cifar_dtype_state_numpy_would_choke_on_is_refused():
    """One byte changed in a batch, a uint8 dtype's flags set to 3 ("holds object references"), stopped
    numpy 2.4's unpickling with an internal SystemError; such a state is now refused before numpy sees it."""
    images = np.zeros((1, 3072), dtype=np.uint8)
    with pytest.raises(GankitError, match="refused a dtype"):
        cifar.parse_batch(_py2_batch(images, [0], dtype_state=b"K\x03"), name="b")


# ---- real files in ../shared/data ------------------------------------------------------------------------------------


def test_real_mnist(shared_data):
    t0 = time.perf_counter()
    ds = load_dataset("mnist", root=shared_data)
    assert time.perf_counter() - t0 < 2.0  # loading full MNIST from its gz files, verification included
    assert len(ds) == 60_000 and ds.class_counts()[0] == 5923
    assert len(load_dataset("mnist", root=shared_data, split="test")) == 10_000


def test_real_fashion(shared_data):
    ds = load_dataset("fashion-mnist", root=shared_data, split="train+test")
    assert len(ds) == 70_000 and ds.class_counts() == [7000] * 10


def test_real_cifar_ships(shared_data):
    with pytest.warns(UserWarning, match="lossy") if not cifar._LOSSY_WARNED else _nullcontext():
        ds = load_dataset("cifar10:ship", root=shared_data, split="train+test")
    assert len(ds) == 6000 and set(ds.labels.tolist()) == {8}
    mean = ds.images.float().mean().item() / 255
    assert 0.3 < mean < 0.7


def test_real_stacked_mnist_is_deterministic(shared_data):
    a = load_dataset("stacked-mnist", root=shared_data, stacked_size=500, stacked_seed=3)
    b = load_dataset("stacked-mnist", root=shared_data, stacked_size=500, stacked_seed=3)
    c = load_dataset("stacked-mnist", root=shared_data, stacked_size=500, stacked_seed=4)
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    mnist = load_dataset("mnist", root=shared_data)
    # each channel is an MNIST digit, and the label spells the three digits
    lab = a.labels[0].item()
    for ch, digit in enumerate((lab // 100, lab // 10 % 10, lab % 10)):
        matches = (mnist.images[:, 0] == a.images[0, ch]).flatten(1).all(1)
        assert matches.any() and mnist.labels[matches][0].item() == digit
    assert len(set(a.labels.tolist())) > 300


def test_describe_matches_loaded():
    info = describe("mnist-demo")
    ds = load_dataset("mnist-demo")
    assert (info.resolution, info.channels, info.class_names) == (ds.info.resolution, ds.info.channels,
                                                                   ds.info.class_names)


def test_md5_of_demo_matches_official():
    from gankit.data.sources import DEMO_DIR, MNIST_FILES

    content = gzip.decompress((DEMO_DIR / "mnist" / "t10k-images-idx3-ubyte.gz").read_bytes())
    assert hashlib.md5(content).hexdigest() == MNIST_FILES["t10k-images"].content_md5


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def test_idx_images_of_another_size_are_a_clear_error_even_unverified(tmp_path):
    fake_mnist(tmp_path)
    write_idx_gz(tmp_path / "mnist" / "train-images-idx3-ubyte.gz", np.zeros((50, 32, 32), dtype=np.uint8))
    with pytest.raises(GankitError, match="images are 32x32; mnist images are 28x28"):
        load_dataset("mnist", root=tmp_path, verify=False)


def test_channels_and_split_that_do_not_fit_are_refused(tmp_path):
    fake_mnist(tmp_path)
    with pytest.raises(GankitError, match="has 1 channel.*data.channels=3 does not match"):
        load_dataset("mnist", root=tmp_path, verify=False, channels=3)
    with pytest.raises(GankitError, match="unknown split 'bogus'"):
        load_dataset(f"folder:{tmp_path}", split="bogus")


# ---- CIFAR-10's JPEG copy: completeness and its decoded cache ------------------------------------------------------


def _jpeg_tree(root, per_class, skip=()):
    from PIL import Image

    rng = np.random.default_rng(0)
    base = root / "cifar10" / "cifar-10-images-jpg"
    for part, n in per_class.items():
        for c in cifar.CLASSES:
            if (part, c) in skip:
                continue
            (base / part / c).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(base / part / c / f"{i:04d}.jpg")
    return base


@pytest.fixture
def small_cifar(monkeypatch):
    per_class = {"train": 2, "test": 1}  # the official copy: 5,000 and 1,000 of each class
    monkeypatch.setattr(cifar, "PER_CLASS", per_class)
    return per_class


@pytest.mark.filterwarnings("ignore:cifar10. reading the JPEG copy")
def test_a_partial_cifar_jpeg_tree_is_refused_naming_what_is_missing(tmp_path, small_cifar):
    _jpeg_tree(tmp_path, small_cifar, skip={("test", "cat")})
    assert len(load_dataset("cifar10", root=tmp_path, split="train", verify=False)) == 20
    with pytest.raises(GankitError, match="not a complete CIFAR-10 copy: test/cat has 0"):
        load_dataset("cifar10", root=tmp_path, split="test", verify=False)
    assert len(load_dataset("cifar10:ship", root=tmp_path, split="test", verify=False)) == 1  # not asked for


@pytest.mark.filterwarnings("ignore:cifar10. reading the JPEG copy")
@pytest.mark.parametrize("damage", ["truncated", "empty", "foreign labels", "wrong dtype"])
def test_a_damaged_decoded_cifar_cache_is_decoded_again(tmp_path, monkeypatch, small_cifar, damage):
    monkeypatch.setenv("GANKIT_CACHE", str(tmp_path / "cache"))
    base = _jpeg_tree(tmp_path, small_cifar)
    with tarfile.open(tmp_path / "cifar10" / cifar.JPEG_ARCHIVE.name, "w:gz") as tar:
        tar.add(base, arcname="cifar-10-images-jpg")
    shutil.rmtree(base)
    first = load_dataset("cifar10", root=tmp_path, split="train+test", verify=False)
    (cache,) = (tmp_path / "cache" / "decoded").glob("cifar10-jpg-*.npz")
    if damage == "truncated":
        cache.write_bytes(cache.read_bytes()[:1000])
    elif damage == "empty":
        cache.write_bytes(b"")
    else:
        with np.load(cache) as z:
            images, labels, splits = z["images"], z["labels"], z["splits"]
        if damage == "foreign labels":
            labels = np.zeros_like(labels)
        else:
            images = images.astype(np.float32)
        buf = io.BytesIO()
        np.savez(buf, images=images, labels=labels, splits=splits)
        cache.write_bytes(buf.getvalue())
    again = load_dataset("cifar10", root=tmp_path, split="train+test", verify=False)
    assert torch.equal(again.images, first.images) and torch.equal(again.labels, first.labels)


@pytest.mark.filterwarnings("ignore:cifar10. reading the JPEG copy")
def test_a_recopied_cifar_archive_replaces_its_decoded_cache(tmp_path, monkeypatch, small_cifar):
    """Each decoded cache is up to 185 MB: a newer copy of the archive used to leave the old one's for good.
    The arrays of other splits or classes of the same archive stay."""
    import os

    monkeypatch.setenv("GANKIT_CACHE", str(tmp_path / "cache"))
    base = _jpeg_tree(tmp_path, small_cifar)
    archive = tmp_path / "cifar10" / cifar.JPEG_ARCHIVE.name
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(base, arcname="cifar-10-images-jpg")
    shutil.rmtree(base)
    decoded = tmp_path / "cache" / "decoded"
    decoded.mkdir(parents=True)
    (decoded / f"cifar10-jpg-{'ab' * 12}.npz").write_bytes(b"an older gankit's name, read by nothing now")
    load_dataset("cifar10", root=tmp_path, split="train", verify=False)
    load_dataset("cifar10:ship", root=tmp_path, split="test", verify=False)
    first = sorted(decoded.glob("*.npz"))
    assert len(first) == 2
    st = archive.stat()
    os.utime(archive, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the archive copied again
    load_dataset("cifar10", root=tmp_path, split="train", verify=False)
    now = sorted(decoded.glob("*.npz"))
    # the train arrays replaced, the test/ship arrays (another split) kept
    assert len(now) == 2 and len(set(first) & set(now)) == 1
