"""HQSNet weights files (pydeblur.hqs_io) and their loading through pydeblur.weights_io.load_model."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from pydeblur.hqs import HQSConfig, HQSNet
from pydeblur.hqs_io import (
    HQS_FORMAT,
    LEGACY_FAMILY,
    hqs_tensor_shapes,
    is_hqs,
    load_hqs,
    save_hqs,
)
from pydeblur.weights_io import load_model, read_card, resolve_weights


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(2, 3, 24, 24, generator=g), torch.rand(2, 1, 5, 5, generator=g)


def _trained():
    torch.manual_seed(0)
    net = HQSNet(HQSConfig(stages=2, channels=4, layers=2))
    for stage in net.stages:  # the last convolutions start at zero: give them something
        torch.nn.init.normal_(stage.cnn.convs[-1].weight, std=0.1)
        torch.nn.init.normal_(stage.weight_slope, std=0.1)
    return net.eval()


def test_weights_round_trip_through_load_model_and_are_told_apart_from_deblurnet_weights(tmp_path):
    net = _trained()
    path = save_hqs(net, tmp_path / "hqs.safetensors", {"steps": 3})
    loaded = load_model(path)
    blurred, psf = _inputs()
    assert isinstance(loaded, HQSNet) and loaded.config == net.config and not loaded.training
    assert torch.equal(loaded(blurred, psf), net(blurred, psf))
    card = read_card(path)
    assert card["steps"] == 3 and card["format"] == HQS_FORMAT
    assert is_hqs(path) and not is_hqs(resolve_weights("default"))
    assert not is_hqs(tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="not an HQSNet"):
        load_hqs(resolve_weights("default"))
    with pytest.raises(ValueError, match="holds an HQSNet"):
        load_model(path, config="tiny")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hqs.json", "hqs.safetensors"]


def test_files_from_before_the_format_load_as_they_were_trained(tmp_path):
    net = _trained()
    with torch.no_grad():
        for stage in net.stages:
            stage.weight_slope.zero_()  # old files had no slope: b_t = 0
    path = save_hqs(net, tmp_path / "old.safetensors", {})
    tensors = {k: v for k, v in load_file(str(path)).items() if not k.endswith("weight_slope")}
    # the header of 2026-12-07's runs: a family, and only the fields the config had then
    declared = {k: v for k, v in net.config.to_dict().items() if k not in ("activation", "start")}
    header = {"family": LEGACY_FAMILY, "config": json.dumps(declared)}
    save_file(tensors, str(path), metadata=header)
    (tmp_path / "old.json").write_text(json.dumps({"config": declared}))
    loaded = load_model(path)
    blurred, psf = _inputs()
    assert torch.equal(loaded(blurred, psf), net(blurred, psf))
    # a file of the current format must hold every tensor
    save_file(tensors, str(path), metadata={"format": HQS_FORMAT, "config": json.dumps(declared)})
    with pytest.raises(ValueError, match="config fields missing"):
        load_hqs(path)


@pytest.mark.parametrize(
    "edit, match",
    [
        ({"layers": 10**9}, "layers must be in 2..64"),
        ({"channels": "wide"}, "channels must be an integer"),
        ({"start_weight": float("inf")}, "start_weight must be a positive finite number"),
        ({"activation": "gelu"}, "activation must be one of"),
        ({"start": "/etc/passwd"}, "start must be 'blurred' or a shipped model's name"),
        ({"start": "../weights/default"}, "start must be 'blurred'"),
        ({"filters": 30}, "filters must be in 1..filter_size"),
        ({"extra": 1}, "unknown: \\['extra'\\]"),
    ],
)
def test_bad_configs_are_refused_in_one_line_naming_the_file(tmp_path, edit, match):
    net = _trained()
    path = save_hqs(net, tmp_path / "hqs.safetensors", {})
    (tmp_path / "hqs.json").unlink()
    tensors = load_file(str(path))
    config = {**net.config.to_dict(), **edit}
    save_file(tensors, str(path), metadata={"format": HQS_FORMAT, "config": json.dumps(config)})
    with pytest.raises(ValueError, match=match) as error:
        load_model(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_tensors_that_do_not_fit_the_config_and_a_card_of_another_config_are_refused(tmp_path):
    net = _trained()
    path = save_hqs(net, tmp_path / "hqs.safetensors", {})
    header = {"format": HQS_FORMAT, "config": json.dumps(net.config.to_dict())}
    tensors = load_file(str(path))
    wrong = {**tensors, "stages.1.filters": torch.zeros(3, 5, 5)}
    save_file(wrong, str(path), metadata=header)
    with pytest.raises(ValueError, match="stages.1.filters has shape \\(3, 5, 5\\)"):
        load_model(path)
    save_file(
        {**tensors, "stages.1.filters": tensors["stages.1.filters"].double()},
        str(path),
        metadata=header,
    )
    with pytest.raises(ValueError, match="stages.1.filters has dtype F64"):
        load_model(path)
    missing = {k: v for k, v in tensors.items() if k != "stages.0.log_weight"}
    save_file(missing, str(path), metadata=header)
    with pytest.raises(ValueError, match="missing \\['stages.0.log_weight'\\]"):
        load_model(path)
    save_file(tensors, str(path), metadata=header)
    card = json.loads((tmp_path / "hqs.json").read_text())
    card["config"]["channels"] = 8
    (tmp_path / "hqs.json").write_text(json.dumps(card))
    with pytest.raises(ValueError, match="describes another config"):
        load_model(path)
    (tmp_path / "hqs.safetensors").write_bytes(b"\x00" * 40)
    with pytest.raises(ValueError, match="is not a pydeblur weights file"):
        load_model(path)


@pytest.mark.parametrize(
    "config",
    [
        HQSConfig(stages=2, channels=4, layers=2),
        HQSConfig(stages=1, channels=5, layers=4, filters=25, image_channels=1),
        HQSConfig(stages=1, channels=4, layers=3, residual_input=True, start="robust"),
    ],
    ids=["plain", "grey-whole-basis", "residual-from-robust"],
)
def test_computed_shapes_are_those_of_the_built_model(config):
    built = {k: tuple(v.shape) for k, v in HQSNet(config).state_dict().items()}
    assert hqs_tensor_shapes(config) == built
