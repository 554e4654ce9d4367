"""IDX files (MNIST, Fashion-MNIST, EMNIST): a strict parser that names what is wrong."""

from __future__ import annotations

import math

import numpy as np

from gankit.errors import GankitError

# The third byte of the magic number is the element type; gankit's datasets only use ubyte.
_UBYTE = 0x08


def parse_idx(data: bytes, *, name: str, expect_ndim: int | None = None) -> np.ndarray:
    """Parse the bytes of an (uncompressed) IDX file into a uint8 array.

    ``name`` is used in error messages (the file's path). Raises GankitError on a bad magic
    number, an unsupported element type, a wrong number of dimensions, or a payload whose size
    does not match the header's counts (truncated or padded files).
    """
    if len(data) < 4:
        raise GankitError(f"{name}: not an IDX file: only {len(data)} bytes, too short for a header")
    zero0, zero1, dtype, ndim = data[0], data[1], data[2], data[3]
    if zero0 != 0 or zero1 != 0:
        raise GankitError(f"{name}: not an IDX file: bad magic number 0x{data[:4].hex()} (must start with 0000)")
    if dtype != _UBYTE:
        raise GankitError(f"{name}: IDX element type 0x{dtype:02x} is not supported (expected 0x08, unsigned byte)")
    if ndim == 0 or (expect_ndim is not None and ndim != expect_ndim):
        want = f"{expect_ndim}" if expect_ndim is not None else "at least 1"
        raise GankitError(f"{name}: IDX file has {ndim} dimensions, expected {want}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise GankitError(f"{name}: truncated IDX header ({len(data)} bytes, header needs {header})")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = math.prod(dims)  # Python ints: np.prod in int64 wraps, and 4 x 65536 would claim 0 bytes
    got = len(data) - header
    if got != expected:
        what = "truncated" if got < expected else "has trailing bytes"
        raise GankitError(
            f"{name}: IDX file {what}: header says {' x '.join(map(str, dims))} = {expected} bytes of data, "
            f"found {got}"
        )
    try:
        return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)
    except ValueError:  # e.g. a zero dimension beside others too large for numpy to describe
        raise GankitError(f"{name}: IDX dimensions {' x '.join(map(str, dims))} are not a usable array") from None


def write_idx(array: np.ndarray) -> bytes:
    """The IDX bytes of a uint8 array (used by tests and to write synthetic datasets)."""
    arr = np.ascontiguousarray(array, dtype=np.uint8)
    head = bytes([0, 0, _UBYTE, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return head + arr.tobytes()


def images_and_labels(images: np.ndarray, labels: np.ndarray, *, images_name: str, labels_name: str) -> None:
    """Check that an images file and a labels file belong together (same count)."""
    if images.shape[0] != labels.shape[0]:
        raise GankitError(
            f"{images_name} holds {images.shape[0]} images but {labels_name} holds {labels.shape[0]} labels"
        )
