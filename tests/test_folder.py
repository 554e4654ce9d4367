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


def _save(path, im, fmt):
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    path.write_bytes(buf.getvalue())


def test_folder_of_every_image_mode(tmp_path):
    """1-bit, grey+alpha, palette with transparency, RGBA, CMYK JPEG, 16-bit, 32-bit and float greyscale,
    an animated GIF, all of different sizes: each becomes an 8-bit image of the asked size and channels."""
    root = tmp_path / "modes"
    root.mkdir()
    _save(root / "a-1bit.png", Image.new("1", (20, 20), 1), "PNG")
    _save(root / "b-la.png", Image.new("LA", (20, 24), (100, 50)), "PNG")
    pal = Image.new("P", (30, 20))
    pal.putpalette([0, 0, 0, 255, 0, 0] * 128)
    pal.info["transparency"] = 0
    _save(root / "c-palette.png", pal, "PNG")
    _save(root / "d-rgba.png", Image.new("RGBA", (20, 20), (10, 20, 30, 4)), "PNG")
    _save(root / "e-cmyk.jpg", Image.new("CMYK", (20, 20), (0, 255, 0, 0)), "JPEG")
    _save(root / "f-16bit.png", Image.fromarray(np.full((20, 20), 40000, np.uint16)), "PNG")
    _save(root / "g-32bit.tif", Image.fromarray(np.full((20, 20), 65535, np.int32)), "TIFF")
    _save(root / "h-float.tif", Image.fromarray(np.full((20, 20), 0.5, np.float32)), "TIFF")
    frames = [Image.new("L", (20, 20), v) for v in (10, 200)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    (root / "i-anim.gif").write_bytes(buf.getvalue())
    grey = load_dataset(f"folder:{root}", resolution=16, channels=1)
    assert grey.images.shape == (9, 1, 16, 16)
    means = grey.images.float().mean(dim=(1, 2, 3)).round().tolist()
    assert means[0] == 255 and means[1] == 100 and means[8] == 10  # 1-bit white, LA's grey, the GIF's first frame
    assert means[5] == round(40000 / 257) and means[6] == 255 and means[7] == 128  # 16/32-bit and float scaled
    colour = load_dataset(f"folder:{root}", resolution=16)
    assert colour.images.shape == (9, 3, 16, 16)
    assert colour.images[3, :, 0, 0].tolist() == [10, 20, 30]  # RGBA's colour kept
    assert colour.images[4, :, 0, 0].tolist() == [255, 0, 255]  # CMYK magenta


def test_decompression_bomb_is_skipped(tmp_path, monkeypatch):
    root = tmp_path / "bomb"
    root.mkdir()
    (root / "big.png").write_bytes(_png((1, 2, 3), size=(64, 64)))
    (root / "ok.png").write_bytes(_png((1, 2, 3), size=(8, 8)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64x64 is over twice this: Pillow refuses it
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable file\(s\): big.png \(DecompressionBombError\)"):
        ds = load_dataset(f"folder:{root}", resolution=8)
    assert len(ds) == 1


def test_over_pillows_pixel_limit_is_skipped_not_only_warned(tmp_path, monkeypatch):
    """Between Pillow's limit and twice it Pillow only warns; such files are skipped like the larger ones."""
    root = tmp_path / "big"
    root.mkdir()
    (root / "big.png").write_bytes(_png((1, 2, 3), size=(40, 40)))  # 1,600 pixels: over 1,000, under 2,000
    (root / "ok.png").write_bytes(_png((1, 2, 3), size=(8, 8)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.warns(UserWarning, match=r"big.png \(DecompressionBombWarning\)"):
        assert len(load_dataset(f"folder:{root}", resolution=8)) == 1


def test_symlinked_class_folders_count_and_loops_end(tmp_path):
    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    (root / "a").mkdir(parents=True)
    elsewhere.mkdir()
    (root / "a" / "1.png").write_bytes(_png((255, 0, 0), size=(8, 8)))
    (elsewhere / "2.png").write_bytes(_png((0, 0, 255), size=(8, 8)))
    (root / "b").symlink_to(elsewhere, target_is_directory=True)
    (root / "a" / "up").symlink_to(root, target_is_directory=True)  # a loop
    ds = load_dataset(f"folder:{root}")
    assert ds.info.class_names == ("a", "b") and len(ds) == 2


def test_damaged_archive_members_are_skipped_and_a_cut_tar_refused(tmp_path):
    good = _png((255, 0, 0), size=(8, 8))
    zpath = tmp_path / "pics.zip"
    with zipfile.ZipFile(zpath, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("a.png", good)
        zf.writestr("b.png", _png((0, 255, 0), size=(8, 8)))
    data = bytearray(zpath.read_bytes())
    at = data.find(_png((0, 255, 0), size=(8, 8))[60:80])  # inside b.png's stored bytes: its CRC fails
    data[at : at + 4] = b"XXXX"
    zpath.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable file\(s\): b.png \(damaged in the archive"):
        assert len(load_dataset(f"folder:{zpath}")) == 1
    tpath = tmp_path / "pics.tar"
    with tarfile.open(tpath, "w") as tf:
        for i in range(3):
            info = tarfile.TarInfo(f"{i}.png")
            info.size = len(good)
            tf.addfile(info, io.BytesIO(good))
    data = bytearray(tpath.read_bytes())
    data[1024 + 100 : 1024 + 160] = b"\x07" * 60  # the second member's header: tarfile would stop there quietly
    tpath.write_bytes(bytes(data))
    with pytest.raises(GankitError, match="not a readable"):
        load_dataset(f"folder:{tpath}")


def test_sixteen_bit_grey_in_any_byte_order_loads_as_grey(tmp_path):
    root = tmp_path / "tiff"
    root.mkdir()
    for i, mode in enumerate(("I;16B", "I;16")):
        Image.new(mode, (8, 8), 65535).save(root / f"{i}.tif")
    ds = load_dataset(f"folder:{root}")
    assert ds.images.shape == (2, 1, 8, 8) and (ds.images == 255).all()


@pytest.mark.parametrize("spec", ["folder:", "folder:~nosuchuser_gankit/x"])
def test_folder_paths_that_name_nothing_are_clear_errors(spec):
    with pytest.raises(GankitError, match="folder"):
        load_dataset(spec)


def test_a_file_that_fails_only_when_decoded_costs_itself_not_the_labels(tmp_path):
    """Its header reads (so the first pass keeps it) but its pixels do not: the others keep their classes."""
    root = tmp_path / "pics"
    for cls, colour in (("a", 0), ("b", 255)):
        (root / cls).mkdir(parents=True)
        (root / cls / "1.png").write_bytes(_png(colour, size=(8, 8), mode="L"))
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8), dtype=np.uint8))
    buf = io.BytesIO()
    noise.save(buf, format="PNG")
    (root / "a" / "0cut.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])  # sorts first in "a"
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable file\(s\): a/0cut.png"):
        ds = load_dataset(f"folder:{root}")
    assert ds.info.class_names == ("a", "b") and ds.labels.tolist() == [0, 1]
    assert ds.images[0].max() == 0 and ds.images[1].min() == 255


def test_a_class_name_wins_over_a_position():
    """Folders 0, 1, 2 and 10 sort as text (0, 1, 10, 2): ``--class 2`` is the folder named 2 (it gave
    the third class, folder 10, so two different requests drew the same images)."""
    from gankit.data import resolve_classes

    names = ("0", "1", "10", "2")
    assert resolve_classes(["2", "10", "0"], names, dataset="folder:x") == [3, 2, 0]
    assert resolve_classes(["Cat", "1"], ("cat", "dog"), dataset="folder:y") == [0, 1]  # a position still works
    with pytest.raises(GankitError, match="has no class '7'"):
        resolve_classes(["7"], names, dataset="folder:x")


def test_photos_are_turned_upright_by_their_exif_orientation(tmp_path):
    """A phone photo stored sideways (EXIF orientation 6: turn 90 degrees clockwise to view) loads as
    viewed: its width and height swap, and its stored top half (white) becomes the right half. It was
    loaded as stored, so photos trained sideways and non-square ones were cropped on the wrong axis."""
    root = tmp_path / "photos"
    root.mkdir()
    a = np.zeros((8, 16), dtype=np.uint8)  # stored 16 wide and 8 high, the top half white
    a[:4] = 255
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(root / "photo.png", exif=exif)
    with pytest.raises(GankitError, match="non-square"):  # upright it is 8 wide and 16 high
        load_dataset(f"folder:{root}")
    viewed = load_dataset(f"folder:{root}", resolution=8).images[0, 0]  # centre-cropped to 8 x 8
    assert viewed[:, 4:].float().mean() > 250 and viewed[:, :4].float().mean() < 5  # the right half white


def test_images_beside_class_folders_are_left_out_with_a_warning(tmp_path):
    root = _tree(tmp_path / "pics")
    (root / "thumb.png").write_bytes(_png((9, 9, 9)))
    with pytest.warns(UserWarning) as seen:
        ds = load_dataset(f"folder:{root}", resolution=16)
    said = [str(w.message) for w in seen]
    assert any("left out 1 image(s) lying beside the class folders cats, dogs: thumb.png" in m for m in said), said
    assert any("skipped 3 unreadable" in m for m in said), said  # (the tree's broken files)
    assert ds.info.class_names == ("cats", "dogs") and ds.labels.tolist() == [0, 0, 1]


def test_a_class_folder_without_images_is_named_in_a_warning(tmp_path):
    """An empty class folder is no class; it was dropped without a word, and --class birds then failed
    unexplained. A folder has no splits, and its notes say so (`gankit data check` prints them)."""
    root = _tree(tmp_path / "pics")
    (root / "birds").mkdir()
    (root / "birds" / "notes.txt").write_text("not an image")
    with pytest.warns(UserWarning) as seen:
        ds = load_dataset(f"folder:{root}", resolution=16)
    said = [str(w.message) for w in seen]
    assert any("class folder(s) without readable images, so not classes: birds" in m for m in said), said
    assert ds.info.class_names == ("cats", "dogs") and "no splits" in ds.info.notes[0]


def _digits(root, n=8):
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(root / f"{i}.png")
    return root


def _folder_cfg(preset, spec, steps=2):
    from gankit import config as C
    from tests.helpers import narrow_overrides, tiny_overrides

    return C.build(preset, overrides=[*tiny_overrides(steps), *narrow_overrides(preset), f"data.dataset='{spec}'"])


def test_a_relative_folder_is_recorded_absolute_and_the_run_goes_on_from_anywhere(tmp_path, monkeypatch):
    """A run on folder:pics (relative) stored that text, so --resume, judge and report from another
    directory said 'pics does not exist'."""
    from gankit import config as C
    from gankit.train.loop import train

    _digits(tmp_path / "work" / "pics")
    monkeypatch.chdir(tmp_path / "work")
    train(_folder_cfg("seed002-mlp-mnist", "folder:pics"), tmp_path / "run", progress=False)
    cfg = C.load_file(tmp_path / "run" / "config.toml")
    assert cfg.data.dataset == f"folder:{tmp_path / 'work' / 'pics'}"
    monkeypatch.chdir(tmp_path)
    assert train(cfg, tmp_path / "run", resume=True, progress=False).step == 2
    with pytest.raises(GankitError, match=r"folder dataset: nowhere does not exist \(relative to "):
        load_dataset("folder:nowhere")


def test_a_run_inside_its_own_image_folder_is_refused(tmp_path):
    from gankit.train.loop import train

    pics = _digits(tmp_path / "pics")
    with pytest.raises(GankitError, match="is inside the dataset's folder .*sample grids would be read as training"):
        train(_folder_cfg("seed002-mlp-mnist", f"folder:{pics}"), pics / "run", progress=False)
    assert sorted(p.name for p in pics.iterdir()) == [f"{i}.png" for i in range(8)]  # nothing written there


def test_a_conditional_model_on_a_folder_of_one_class_is_refused(tmp_path):
    """It trained a 'conditional' model on the single class "all", with no word."""
    from gankit.train.loop import train

    pics = _digits(tmp_path / "pics")
    with pytest.raises(GankitError, match=r"conditional model .* hold one class \(all\) \(put its images in one "
                                          r"subfolder per class\)"):
        train(_folder_cfg("seed003-cgan-mnist", f"folder:{pics}"), tmp_path / "run", progress=False)


def test_resuming_after_the_folder_changed_says_what_changed(tmp_path):
    """An added image said only 'sampler state is for 8 images but the dataset has 9'; an added class
    folder blamed 'a changed model.* or optim.* setting'."""
    from gankit.train.loop import train

    root = tmp_path / "pics"
    _digits(root / "a", 4), _digits(root / "b", 4)
    cfg = _folder_cfg("seed002-mlp-mnist", f"folder:{root}")
    train(cfg, tmp_path / "run", progress=False)
    Image.fromarray(np.zeros((28, 28), dtype=np.uint8)).save(root / "a" / "new.png")
    with pytest.raises(GankitError, match=r"was trained on 8 images of folder:.*pics, and the data now has 9; put "
                                          "the data back as it was to resume, or start a new run"):
        train(cfg, tmp_path / "run", resume=True, progress=False)
    (root / "a" / "new.png").unlink()
    _digits(root / "c", 1)
    with pytest.raises(GankitError, match=r"was trained on 2 classes \(a, b\) of folder:.*pics, and the data now "
                                          r"has 3 classes \(a, b, c\); put the data back"):
        train(cfg, tmp_path / "run", resume=True, progress=False)
    (root / "c" / "0.png").unlink()
    (root / "c").rmdir()
    assert train(cfg, tmp_path / "run", resume=True, progress=False).step == 2  # as it was: resumes


def test_a_single_image_file_is_a_clear_error(tmp_path):
    """It gave five lines of archive readers' failures (gz, bz2, xz, tar)."""
    pics = _digits(tmp_path / "pics", 1)
    with pytest.raises(GankitError, match=r"0.png is one image; give the folder that holds the images, folder:.*pics$"):
        load_dataset(f"folder:{pics / '0.png'}")


def test_a_truncated_zip_and_a_junk_file_are_one_line_errors(tmp_path):
    """A truncated .zip is no zip to zipfile (its directory is at the end), so it went to tarfile, whose
    error listed each compression it tried on a line of its own."""
    root = _tree(tmp_path / "pics")
    zpath = tmp_path / "pics.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for p in sorted(root.rglob("*.png")):
            zf.write(p, p.relative_to(root).as_posix())
    data = zpath.read_bytes()
    zpath.write_bytes(data[: len(data) // 2])
    with pytest.raises(GankitError, match=r"pics.zip: a damaged or truncated .zip archive \(its directory at the "
                                          r"end is missing\); copy or download it again"):
        load_dataset(f"folder:{zpath}")
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"not an archive")
    with pytest.raises(GankitError, match="junk.tar: not a readable folder, .zip, .tar or .tar.gz archive") as err:
        load_dataset(f"folder:{junk}")
    assert "\n" not in str(err.value)
