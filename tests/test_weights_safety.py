"""Loading untrusted weights files (#20): the config is checked against limits and every tensor's
declared shape and dtype against the config before anything is built or read; every refusal is a
one-line ValueError naming the file, also on fuzzed files."""

import dataclasses
import json
import math
import os
import resource
import struct
import time

import pytest
import torch

pytest.importorskip("hypothesis")  # in the test extra; a bare GPU image may lack it

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from safetensors.torch import save_file

from pydeblur.model import CONFIGS, DeblurNet, ModelConfig
from pydeblur.weights_io import (
    _FIELD_CHECKS,
    FORMAT,
    MAX_BLOCKS,
    MAX_CHANNELS,
    MAX_CONTEXT_LEVELS,
    MAX_IMAGE_CHANNELS,
    MAX_KERNEL_SIZE,
    MAX_SNRS,
    WEIGHTS_DIR,
    _checked_config,
    _tensor_shapes,
    card_path,
    load_model,
    read_card,
    save_weights,
)

TINY = CONFIGS["tiny"].to_dict()
FUZZ = settings(
    max_examples=150,
    deadline=2000,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def tiny_tensors(dtype=torch.float32):
    return {k: v.to(dtype).contiguous() for k, v in DeblurNet("tiny").state_dict().items()}


def write_weights(path, config, tensors=None):
    """A weights file with the header `save_weights` writes; config: a dict or the raw JSON text."""
    text = config if isinstance(config, str) else json.dumps(config)
    tensors = tiny_tensors() if tensors is None else tensors
    save_file(tensors, str(path), metadata={"format": FORMAT, "config": text})
    return path


def refusal(path, name=None):
    """load_model(path)'s ValueError message, checked to be one line naming the file."""
    with pytest.raises(ValueError) as info:
        load_model(path)
    message = str(info.value)
    assert "\n" not in message and (name or path.name) in message, message
    return message


def peak_rss_growth(run):
    """Bytes by which this process's peak resident memory grew while `run()` ran (a lower bound on
    what it allocated and touched above the earlier peak)."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    run()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024  # KiB on Linux


def refused_cheaply(path, match):
    """Refused in under a second, the peak memory growing by under 50 MB."""
    messages = []
    start = time.perf_counter()
    grown = peak_rss_growth(lambda: messages.append(refusal(path)))
    assert time.perf_counter() - start < 1.0
    assert grown < 50e6, f"peak memory grew by {grown / 1e6:.0f} MB"
    assert match in messages[0], messages[0]


def test_wide_config_is_refused_before_building(tmp_path):
    # The 540-byte file of the issue: 1500 channels of 7x7 convs (~1 GB of weights on the old code).
    path = write_weights(
        tmp_path / "wide.safetensors",
        {**TINY, "channels": 1500, "kernel_size": 7},
        {"log_nsr": torch.zeros(15)},
    )
    assert path.stat().st_size < 1000
    refused_cheaply(path, "channels")


def test_ten_million_blocks_are_refused_at_once(tmp_path):
    path = write_weights(tmp_path / "deep.safetensors", {**TINY, "blocks": 10**7})
    refused_cheaply(path, "blocks")


def test_the_largest_allowed_config_is_checked_without_building_it(tmp_path):
    largest = {
        **TINY,
        "blocks": MAX_BLOCKS,
        "channels": MAX_CHANNELS,
        "kernel_size": MAX_KERNEL_SIZE,
        "snr_db": [float(v) for v in range(MAX_SNRS)],
        "context_levels": MAX_CONTEXT_LEVELS,
        "image_channels": MAX_IMAGE_CHANNELS,
    }
    # ~8e9 parameters (32 GB) on the old code, which built it before looking at the tensors.
    assert sum(math.prod(s) for s in _tensor_shapes(ModelConfig(**largest)).values()) > 7e9
    refused_cheaply(write_weights(tmp_path / "largest.safetensors", largest), "tensor names")


def test_declared_shapes_are_checked_before_building(tmp_path):
    # The tiny model's tensor names with a 512-channel 15x15 config: ~0.5 GB built on the old code.
    path = write_weights(
        tmp_path / "shape.safetensors", {**TINY, "channels": 512, "kernel_size": 15}
    )
    refused_cheaply(path, "has shape")


def test_wrong_dtype_is_refused(tmp_path):
    path = write_weights(tmp_path / "half.safetensors", TINY, tiny_tensors(torch.float16))
    assert "dtype F16" in refusal(path)


@pytest.mark.parametrize(
    "config, match",
    [
        ("{not json", "not JSON"),
        ("[" * 50_000, "not JSON"),  # deeper than json's recursion limit
        (" " * 100_000 + "{}", "characters long"),
        ("[1, 2]", "JSON object"),
        (json.dumps({**TINY, "blocks": "5"}), "blocks must be an integer"),
        (json.dumps({**TINY, "blocks": 5.0}), "blocks must be an integer"),
        (json.dumps({**TINY, "learn_nsr": 1}), "learn_nsr must be a bool"),
        (json.dumps({**TINY, "snr_db": []}), "snr_db"),
        (json.dumps({**TINY, "snr_db": [9.0, float("nan")]}), "snr_db"),
        (json.dumps({**TINY, "data_consistency": 10**400}), "data_consistency"),
        (json.dumps({**TINY, "kernel_size": 4}), "kernel_size"),
        (json.dumps({**TINY, "margin": 0}), "margin"),
        (json.dumps({k: v for k, v in TINY.items() if k != "margin"}), "missing: ['margin']"),
        (json.dumps({**TINY, "width": 3}), "unknown: ['width']"),
        (json.dumps({**TINY, "head": "sum\nmore"}), "head"),
    ],
)
def test_bad_configs_are_one_line_value_errors(tmp_path, config, match):
    assert match in refusal(write_weights(tmp_path / "bad.safetensors", config))


def test_card_must_be_json_describing_the_config(tmp_path):
    path = save_weights(DeblurNet("tiny"), tmp_path / "m.safetensors", {})
    card = card_path(path)
    card.write_bytes(b"\xff not json")
    assert "not JSON" in refusal(path, card.name)
    with pytest.raises(ValueError, match="m.json is not JSON"):
        read_card(path)
    card.write_text(json.dumps({"config": {**TINY, "blocks": "1"}}))
    assert "blocks" in refusal(path, card.name)
    card.write_text(json.dumps({"note": "no config"}))
    assert "JSON object" in refusal(path, card.name)


def test_unreadable_files_are_value_errors(tmp_path):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(b"\x00" * 3)
    assert "not a readable safetensors file" in refusal(path)
    path.write_bytes(struct.pack("<Q", 10**12) + b"{}")
    assert "not a readable safetensors file" in refusal(path)


def test_save_weights_keeps_a_replaced_files_mode(tmp_path):
    path = save_weights(DeblurNet("tiny"), tmp_path / "m.safetensors", {})
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    path.chmod(0o600)
    save_weights(DeblurNet("tiny"), path, {})
    assert path.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors"]


def test_limits_cover_every_field_and_every_shipped_config():
    assert set(_FIELD_CHECKS) == {f.name for f in dataclasses.fields(ModelConfig)}
    for config in CONFIGS.values():
        assert _checked_config(config.to_dict()) == config
    assert load_model("default").config == _checked_config(read_card("default")["config"])


def test_every_shipped_model_loads_with_a_card_that_names_it_and_its_measurements():
    files = sorted(WEIGHTS_DIR.glob("*.safetensors"))
    assert "default" in [path.stem for path in files]
    assert sum(path.stat().st_size for path in files) <= 20 * 2**20  # the package's weights budget
    for path in files:
        card = read_card(path.stem)
        assert card["name"] == path.stem
        assert load_model(path.stem).config == _checked_config(card["config"])
        assert card["metrics"]["evaluation"]["psnr_db"]["levin_32"] > 30


@pytest.mark.parametrize(
    "config",
    [
        *CONFIGS.values(),
        ModelConfig(blocks=0, channels=4, kernel_size=1, head="direct", image_channels=1),
        ModelConfig(channels=4, context_levels=4, snr_db=(10.0, 20.0), learn_nsr=True),
        ModelConfig(channels=5, kernel_size=7, context_levels=1, head="mix", image_channels=4),
        ModelConfig(blocks=2, channels=6, kernel_size=3, noise_conditioning=True),
    ],
)
def test_computed_shapes_are_those_of_the_built_model(config):
    built = DeblurNet(config).state_dict()
    assert _tensor_shapes(config) == {k: tuple(v.shape) for k, v in built.items()}


# Fuzzing: whatever the bytes, load_model loads or refuses with a one-line ValueError naming the file.


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    """A fuzzing folder and the bytes of a valid tiny weights file and of its card."""
    folder = tmp_path_factory.mktemp("fuzz")
    source = save_weights(DeblurNet("tiny"), folder / "valid.safetensors", {"note": "fuzz"})
    return folder, source.read_bytes(), card_path(source).read_bytes()


def loads_or_refuses(path):
    try:
        load_model(path)
    except (ValueError, FileNotFoundError) as error:
        assert "\n" not in str(error) and path.stem in str(error), str(error)


def place(folder, weights, card=None):
    path = folder / "fuzzed.safetensors"
    path.write_bytes(weights)
    if card is None:
        card_path(path).unlink(missing_ok=True)
    else:
        card_path(path).write_bytes(card)
    return path


@FUZZ
@given(data=st.binary(max_size=600))
def test_fuzz_random_bytes(valid, data):
    loads_or_refuses(place(valid[0], data))


MUTATION = st.tuples(
    st.sampled_from(["flip", "insert", "delete", "digit", "digit"]),
    st.sampled_from(["header", "header", "header", "body", "card"]),
    st.integers(0, 1 << 16),
    st.integers(1, 255),
)


def mutate(data, region, op, index, byte):
    data = bytearray(data)
    if region is not None:
        start, stop = region
        index = start + index % max(stop - start, 1)
    if op == "digit":  # rewrite one of the region's digits (a shape, an offset, a config value)
        digits = [i for i in range(*(region or (0, len(data)))) if 48 <= data[i] <= 57]
        if digits:
            data[digits[index % len(digits)]] = 48 + byte % 10
        return bytes(data)
    index = min(index, len(data))
    if op == "flip" and index < len(data):
        data[index] ^= byte
    elif op == "insert":
        data.insert(index, byte)
    elif index < len(data):
        del data[index]
    return bytes(data)


@settings(FUZZ, max_examples=400)
@given(mutations=st.lists(MUTATION, min_size=1, max_size=4), with_card=st.booleans())
def test_fuzz_mutated_weights_and_card(valid, mutations, with_card):
    folder, weights, card = valid
    header = 8 + struct.unpack("<Q", weights[:8])[0]
    for op, where, index, byte in mutations:
        if where == "card":
            card = mutate(card, None, op, index, byte)
        else:
            span = (0, header) if where == "header" else (header, len(weights))
            weights = mutate(weights, span, op, index, byte)
    loads_or_refuses(place(folder, weights, card if with_card else None))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=6,
)
CONFIG_EDIT = st.tuples(
    st.sampled_from([*TINY, "extra"]),
    st.just("delete") | st.integers(-2, 80) | JSON_VALUES,
)


@FUZZ
@given(
    edits=st.lists(CONFIG_EDIT, min_size=1, max_size=3), where=st.sampled_from(["header", "card"])
)
def test_fuzz_config_values(valid, edits, where):
    config = dict(TINY)
    for name, value in edits:
        if value == "delete":
            config.pop(name, None)
        else:
            config[name] = value
    folder = valid[0]
    path = folder / "fuzzed.safetensors"
    write_weights(path, config if where == "header" else TINY)
    card = {"format": FORMAT, "config": config if where == "card" else TINY}
    card_path(path).write_text(json.dumps(card))
    loads_or_refuses(path)
