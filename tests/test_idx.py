import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gankit.data.idx import parse_idx, write_idx
from gankit.errors import GankitError


def test_round_trip():
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(parse_idx(write_idx(a), name="x", expect_ndim=3), a)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda b: b"\x01" + b[1:], "bad magic"),
        (lambda b: b[:2] + b"\x0d" + b[3:], "element type"),
        (lambda b: b[:-5], "truncated"),
        (lambda b: b + b"\x00", "trailing bytes"),
        (lambda b: b[:6], "truncated IDX header"),
        (lambda b: b"", "too short"),
    ],
)
def test_bad_files_name_the_problem(mutate, message):
    data = write_idx(np.zeros((3, 4, 4), dtype=np.uint8))
    with pytest.raises(GankitError, match=message) as err:
        parse_idx(mutate(data), name="some/file")
    assert "some/file" in str(err.value)


def test_wrong_ndim():
    with pytest.raises(GankitError, match="3 dimensions, expected 1"):
        parse_idx(write_idx(np.zeros((2, 2, 2), dtype=np.uint8)), name="labels", expect_ndim=1)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_crash(data):
    try:
        parse_idx(data, name="fuzz")
    except GankitError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 40), st.integers(0, 255))
def test_single_byte_mutations(pos, value):
    data = bytearray(write_idx(np.ones((2, 3, 3), dtype=np.uint8)))
    data[pos % len(data)] = value
    try:
        out = parse_idx(bytes(data), name="fuzz")
        assert out.size == len(data) - 4 - 4 * out.ndim
    except GankitError:
        pass
