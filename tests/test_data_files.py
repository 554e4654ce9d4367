import gzip
import hashlib

import pytest

from gankit.data import files
from gankit.data.files import FileSpec, download, find_file, read_bytes, verify
from gankit.errors import GankitError


def test_verify_uses_decompressed_content(tmp_path):
    content = b"hello idx content" * 100
    a = tmp_path / "a.gz"
    a.write_bytes(gzip.compress(content, compresslevel=1))
    b = tmp_path / "b.gz"
    b.write_bytes(gzip.compress(content, compresslevel=9, mtime=12345))
    assert a.read_bytes() != b.read_bytes()
    spec = FileSpec(name="x.gz", content_md5=hashlib.md5(content).hexdigest())
    verify(a, spec)
    verify(b, spec)  # a re-compressed copy of the same data passes


def test_verify_mismatch_names_file(tmp_path):
    p = tmp_path / "bad.gz"
    p.write_bytes(gzip.compress(b"wrong"))
    with pytest.raises(GankitError, match="bad.gz: checksum mismatch"):
        verify(p, FileSpec(name="bad.gz", content_md5="0" * 32))


def test_verification_is_cached(tmp_path, monkeypatch):
    content = b"x" * 1000
    p = tmp_path / "c.gz"
    p.write_bytes(gzip.compress(content))
    spec = FileSpec(name="c.gz", content_md5=hashlib.md5(content).hexdigest())
    verify(p, spec)
    calls = []
    monkeypatch.setattr(files, "read_bytes", lambda path: calls.append(path) or b"")
    verify(p, spec)  # cached: no read, and the fake reader would fail the md5 anyway
    assert calls == []
    p.write_bytes(gzip.compress(content, mtime=1) + b"")  # changed file -> verified again
    import os

    os.utime(p, ns=(1, 1))
    monkeypatch.undo()
    verify(p, spec)


def test_truncated_gzip_is_clear(tmp_path):
    p = tmp_path / "t.gz"
    p.write_bytes(gzip.compress(b"a" * 10000)[:30])
    with pytest.raises(GankitError, match="t.gz: corrupted or truncated gzip"):
        read_bytes(p)


def test_download_verifies_and_renames(tmp_path, monkeypatch):
    monkeypatch.delenv("GANKIT_OFFLINE")
    content = b"payload" * 1000
    src = tmp_path / "src" / "f.gz"
    src.parent.mkdir()
    src.write_bytes(gzip.compress(content))
    good = FileSpec(name="f.gz", content_md5=hashlib.md5(content).hexdigest(), urls=(src.as_uri(),))
    out = find_file(tmp_path / "root", good, dataset="demo")
    assert out.read_bytes() == src.read_bytes()
    bad = FileSpec(name="g.gz", content_md5="0" * 32, urls=(src.as_uri(),))
    with pytest.raises(GankitError, match="download failed"):
        find_file(tmp_path / "root", bad, dataset="demo")
    assert not (tmp_path / "root" / "g.gz").exists()
    assert not list((tmp_path / "root").glob(".*part"))  # nothing half-written left behind


def test_missing_file_offline_names_files_and_folder(tmp_path):
    spec = FileSpec(name="train-images-idx3-ubyte.gz", urls=("https://example.invalid/x",))
    other = FileSpec(name="train-labels-idx1-ubyte.gz")
    with pytest.raises(GankitError) as err:
        find_file(tmp_path, spec, dataset="mnist", all_specs=(spec, other))
    msg = str(err.value)
    assert str(tmp_path) in msg and "train-labels-idx1-ubyte.gz" in msg and "GANKIT_OFFLINE" in msg


def test_download_to_file_url(tmp_path):
    src = tmp_path / "plain.bin"
    src.write_bytes(b"abc" * 10)
    dest = download(src.as_uri(), tmp_path / "out" / "plain.bin", progress=False)
    assert dest.read_bytes() == src.read_bytes()


def test_a_failed_download_leaves_no_folders_behind(tmp_path):
    # a mistyped --data-root must not be left behind as empty folders
    (tmp_path / "kept").mkdir()
    for missing in (tmp_path / "nonexistent.bin", tmp_path / "kept" / "nonexistent.bin"):
        with pytest.raises(OSError):
            download(missing.as_uri(), tmp_path / "kept" / "typo" / "mnist" / "f.gz", progress=False)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == ["kept"]


def test_free_memory_counts_a_containers_limit(tmp_path):
    from gankit.data.files import available_memory

    assert available_memory(tmp_path) is None  # neither file: no check
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "meminfo").write_text("MemTotal: 16777216 kB\nMemAvailable:    8388608 kB\n")
    assert available_memory(tmp_path) == 8 * 2**30
    cgroup = tmp_path / "sys" / "fs" / "cgroup"
    cgroup.mkdir(parents=True)
    (cgroup / "memory.max").write_text("max\n")
    assert available_memory(tmp_path) == 8 * 2**30
    (cgroup / "memory.max").write_text(f"{4 * 2**30}\n")  # a 4 GiB container, 1 GiB used (and page cache)
    (cgroup / "memory.stat").write_text(f"anon {2**30}\nfile {3 * 2**30}\n")
    assert available_memory(tmp_path) == 3 * 2**30


@pytest.mark.parametrize("marks", ["null", "[]", "5", '{"/some/file": 5}', '{"/some/file": null}'])
def test_a_foreign_verification_file_reads_as_no_marks(tmp_path, monkeypatch, marks):
    """A verified.json that is valid JSON but not gankit's marks (hand-edited, another tool's) means
    "check the files again", never an AttributeError on every dataset load."""
    monkeypatch.setenv("GANKIT_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "verified.json").write_text(marks)
    content = b"y" * 100
    p = tmp_path / "d.gz"
    p.write_bytes(gzip.compress(content))
    spec = FileSpec(name="d.gz", content_md5=hashlib.md5(content).hexdigest())
    verify(p, spec)
    assert files.is_verified(p, f"md5:{spec.content_md5}")


def test_two_downloads_of_one_file_use_their_own_part_files(tmp_path, monkeypatch):
    """Every rank of a first torchrun fetches a missing file: one process's part file must not be
    written into, or deleted by, another's."""
    parts = []

    def fetch(url, part, dest, *, spec, progress):
        parts.append(part)
        part.write_bytes(b"x")
        part.replace(dest)

    monkeypatch.setattr(files, "_fetch", fetch)
    download("file:///x", tmp_path / "f.gz", progress=False)
    monkeypatch.setattr(files.os, "getpid", lambda: 424242)
    download("file:///x", tmp_path / "f.gz", progress=False)
    assert parts[0] != parts[1] and "424242" in parts[1].name
