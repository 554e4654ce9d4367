"""Property tests: random and mutated input to the IDX, CIFAR and config parsers fails only with GankitError."""

import dataclasses
import pickle

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gankit import config as C
from gankit.data.cifar import parse_batch
from gankit.data.idx import parse_idx
from gankit.errors import GankitError

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---- IDX -------------------------------------------------------------------------------------------------------


def test_idx_header_whose_size_overflows_64_bits():
    """4 dimensions of 65536: 2**64 elements, which wraps to 0 in int64 and matched an empty payload."""
    data = bytes([0, 0, 8, 4]) + (65536).to_bytes(4, "big") * 4
    with pytest.raises(GankitError, match="truncated"):
        parse_idx(data, name="x")


@FAST
@given(st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=6), st.binary(max_size=64))
def test_idx_random_headers(dims, payload):
    data = bytes([0, 0, 8, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims) + payload
    try:
        out = parse_idx(data, name="fuzz")
    except GankitError:
        return
    assert out.shape == tuple(dims) and out.nbytes == len(payload)


# ---- CIFAR batches -----------------------------------------------------------------------------------------------


def _batch(n=2, protocol=2):
    rng = np.random.default_rng(0)
    obj = {b"batch_label": b"x", b"labels": list(range(n)), b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
           b"filenames": [b"a.png"] * n}
    return pickle.dumps(obj, protocol=protocol)


def _parse(data):
    try:
        images, labels = parse_batch(data, name="fuzz")
    except GankitError:
        return
    assert images.dtype == np.uint8 and images.shape[1:] == (3, 32, 32) and labels.shape == (images.shape[0],)


@FAST
@given(st.binary(max_size=300))
def test_cifar_random_bytes(data):
    _parse(data)


@FAST
@given(st.integers(0, 10_000), st.integers(0, 255), st.sampled_from([2, 4, 5]))
@example(184, 3, 4)  # the dtype's flags set to 3: numpy 2.4 raised SystemError before dtypes were checked
def test_cifar_single_byte_mutations(pos, value, protocol):
    data = bytearray(_batch(protocol=protocol))
    data[pos % len(data)] = value
    _parse(bytes(data))


@FAST
@given(st.integers(0, 10_000), st.sampled_from([2, 4, 5]))
def test_cifar_truncated(cut, protocol):
    data = _batch(protocol=protocol)
    _parse(data[: cut % len(data)])


_plain = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.binary(max_size=8) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.binary(max_size=6) | st.text(max_size=6), inner,
                                                                max_size=4),
    max_leaves=12)


@FAST
@given(labels=_plain, data=_plain, n=st.integers(0, 3))
def test_cifar_wrong_shapes_and_types(labels, data, n):
    """Well-formed pickles of the wrong content: odd labels, odd data, arrays of other shapes and types."""
    _parse(pickle.dumps({b"labels": labels, b"data": data}, protocol=2))
    _parse(pickle.dumps({b"labels": labels, b"data": np.zeros((n, 3072), np.uint8)}, protocol=2))
    _parse(pickle.dumps({"labels": [0] * n, "data": np.zeros((n, 3, 32, 32), np.uint8)}, protocol=2))
    _parse(pickle.dumps({b"labels": [2**70] * n, b"data": np.zeros((n, 3072), np.uint8)}, protocol=2))


# ---- config -------------------------------------------------------------------------------------------------------


def _keys():
    """Every setting's dotted key, plus tables given where a value belongs and the other way round."""
    fields = dataclasses.fields
    out = ["name", "description", "data", "model", "optim", "optim.g", "model.d"]
    for name, cls in {"data": C.DataConfig, "model": C.ModelConfig, "loss": C.LossConfig,
                      "schedule": C.ScheduleConfig, "train": C.TrainConfig}.items():
        out += [f"{name}.{f.name}" for f in fields(cls)]
    out += [f"model.{s}.{k}" for s in "gd" for k in ("arch", "params", "hidden", "leak")]
    out += [f"optim.{s}.{f.name}" for s in "gd" for f in fields(C.OptimConfig)]
    return out


KEYS = _keys()
_toml_value = st.recursive(
    st.booleans() | st.integers(-10**20, 10**20) | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8)


@FAST
@given(st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=12), _toml_value, max_size=4))
def test_config_random_settings(settings_):
    data: dict = {}
    for key, value in settings_.items():
        node = data
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                break
        else:
            node[parts[-1]] = value
    try:
        C.validate(C.from_dict(C.Config, data, where=""))
    except GankitError:
        pass


@FAST
@given(st.lists(st.text(max_size=30), max_size=3))
def test_config_random_overrides(items):
    try:
        C.build("seed002-mlp-mnist", overrides=items)
    except GankitError:
        pass


@FAST
@given(st.sampled_from(KEYS), st.text(max_size=20))
def test_config_override_of_a_known_key(key, raw):
    try:
        C.build("seed002-mlp-mnist", overrides=[f"{key}={raw}"])
    except GankitError:
        pass


@FAST
@given(st.text(max_size=200))
def test_config_random_toml(text):
    try:
        C.validate(C.from_dict(C.Config, C.parse_toml(text, source="fuzz"), where=""))
    except GankitError:
        pass
