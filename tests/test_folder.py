import io
import tarfile
import zipfile

import numpy as np
import pytest
from PIL import Image

from gankit.data import load_dataset
from gankit.errors import GankitError


def _png(color, size=(40, 30), mode="RGB"):
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, format="PNG")
    return buf.getvalue()


def _tree(root):
    (root / "cats").mkdir(parents=True)
    (root / "dogs").mkdir()
    (root / "cats" / "a.png").write_bytes(_png((255, 0, 0)))
    (root / "cats" / "b.png").write_bytes(_png(128, size=(20, 50), mode="L"))  # other size and mode
    (root / "dogs" / "c.png").write_bytes(_png((0, 0, 255), size=(64, 64)))
    (root / "dogs" / "broken.png").write_bytes(_png((0, 255, 0))[:40])  # truncated
    (root / "dogs" / "empty.jpg").write_bytes(b"")
    (root / "dogs" / "notes.jpg").write_bytes(b"not an image at all")
    return root


def test_folder_classes_resize_and_skips(tmp_path):
    root = _tree(tmp_path / "pics")
    with pytest.warns(UserWarning, match="skipped 3 unreadable"):
        ds = load_dataset(f"folder:{root}", resolution=16)
    assert ds.images.shape == (3, 3, 16, 16)
    assert ds.info.class_names == ("cats", "dogs") and ds.labels.tolist() == [0, 0, 1]
    red = ds.images[0].float().mean(dim=(1, 2))
    assert red[0] > 250 and red[1] < 5 and red[2] < 5
    assert (ds.images[1] == 128).all()  # grey converted to RGB


def test_folder_archives(tmp_path):
    root = _tree(tmp_path / "pics")
    zpath = tmp_path / "pics.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for p in sorted(root.rglob("*.png")):
            zf.write(p, f"pics/{p.relative_to(root)}")
    tpath = tmp_path / "pics.tar.gz"
    with tarfile.open(tpath, "w:gz") as tf:
        tf.add(root, arcname="pics")
    for path in (zpath, tpath):
        with pytest.warns(UserWarning):
            ds = load_dataset(f"folder:{path}", resolution=8, channels=1)
        assert ds.images.shape == (3, 1, 8, 8) and ds.info.class_names == ("cats", "dogs")


def test_folder_needs_resolution_for_mixed_sizes(tmp_path):
    root = tmp_path / "mixed"
    root.mkdir()
    (root / "a.png").write_bytes(_png((1, 2, 3), size=(10, 10)))
    (root / "b.png").write_bytes(_png((1, 2, 3), size=(12, 12)))
    with pytest.raises(GankitError, match="set data.resolution"):
        load_dataset(f"folder:{root}")
    ds = load_dataset(f"folder:{root}", resolution=10)
    assert ds.info.class_names == ("all",) and np.unique(ds.labels.numpy()).tolist() == [0]


def test_folder_with_nothing_readable(tmp_path):
    root = tmp_path / "bad"
    root.mkdir()
    (root / "x.png").write_bytes(b"junk")
    with pytest.raises(GankitError, match="no readable images"), pytest.warns(UserWarning):
        load_dataset(f"folder:{root}", resolution=8)
    with pytest.raises(GankitError, match="does not exist"):
        load_dataset(f"folder:{tmp_path / 'missing'}")
