"""`HQSNet` weights files: safetensors with the `HQSConfig` in the header and a JSON card beside.

The same guarantees as `pydeblur.weights_io` (whose `load_model` hands these files here): the header's
config is checked (JSON, types, limits) and every tensor's declared name, shape and dtype against
what that config implies before a tensor is read or a network built; never unpickles; a bad file
raises a one-line ValueError naming it. Files written by the training runs of 2026-12-07 before this
format (header {"family": "hqs"}, some without the data weights' slopes) load as they were trained.
"""

import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from pydeblur.atomic import atomic_path
from pydeblur.hqs import ACTIVATIONS, HQSConfig, HQSNet

HQS_FORMAT = "pydeblur.HQSNet/1"
LEGACY_FAMILY = "hqs"  # the header of the files written before HQS_FORMAT
MAX_HQS_STAGES = 20  # HQSConfig's own limit
MAX_LAYERS = 64


def save_hqs(
    model: HQSNet, path: str | os.PathLike, card: dict[str, Any], upto: int | None = None
) -> Path:
    """The weights of the first `upto` stages of `model` (default all) as .safetensors, the config in
    its header, and the card (free-form facts; the config is added) beside them (.json), atomically.

    >>> import tempfile
    >>> net = HQSNet(HQSConfig(stages=2, channels=4, layers=2))
    >>> path = save_hqs(net, Path(tempfile.mkdtemp()) / "hqs.safetensors", {"steps": 0}, upto=1)
    >>> load_hqs(path).config.stages
    1
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"path must end in .safetensors, got {path}")
    upto = model.config.stages if upto is None else upto
    config = {**model.config.to_dict(), "stages": upto}
    tensors = {
        k: v.detach().to("cpu", torch.float32).contiguous()
        for k, v in model.state_dict().items()
        if not k.startswith("stages.") or int(k.split(".")[1]) < upto
    }
    metadata = {"format": HQS_FORMAT, "config": json.dumps(config, sort_keys=True)}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    from pydeblur.weights_io import card_path

    with atomic_path(card_path(path)) as tmp:
        tmp.write_text(json.dumps({**card, "format": HQS_FORMAT, "config": config}, indent=2))
    return path


def is_hqs_header(metadata: dict[str, str]) -> bool:
    """Whether a safetensors header (its metadata) is that of an HQSNet weights file.

    >>> is_hqs_header({"format": HQS_FORMAT}), is_hqs_header({"format": "pydeblur.DeblurNet/1"})
    (True, False)
    """
    return metadata.get("format") == HQS_FORMAT or metadata.get("family") == LEGACY_FAMILY


def is_hqs(path: str | os.PathLike) -> bool:
    """Whether `path` is a readable .safetensors file holding an HQSNet.

    >>> from pydeblur.weights_io import resolve_weights
    >>> is_hqs(resolve_weights("default")), is_hqs("no-such-file.safetensors")
    (False, False)
    """
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return is_hqs_header(f.metadata() or {})
    except (OSError, SafetensorError):
        return False


def _check_start(value: Any) -> str | None:
    from pydeblur.weights_io import WEIGHTS_DIR, _short

    if not isinstance(value, str):
        return f"must be a string, got {_short(value)}"
    shipped = value.isidentifier() and (WEIGHTS_DIR / f"{value}.safetensors").is_file()
    if value != "blurred" and not shipped:
        return f"must be 'blurred' or a shipped model's name, got {_short(value)}"
    return None


def _field_checks() -> dict[str, Any]:
    from pydeblur.weights_io import (
        MAX_CHANNELS,
        MAX_KERNEL_SIZE,
        _check_int,
        _check_number,
        _check_type,
        _short,
    )

    def activation(value: Any) -> str | None:
        if value not in ACTIVATIONS:
            return f"must be one of {sorted(ACTIVATIONS)}, got {_short(value)}"
        return None

    def positive(value: Any) -> str | None:
        problem = _check_number(value)
        if problem is None and not (math.isfinite(value) and value > 0):
            return f"must be a positive finite number, got {_short(value)}"
        return problem

    return {
        "stages": lambda v: _check_int(v, 1, MAX_HQS_STAGES),
        "channels": lambda v: _check_int(v, 1, MAX_CHANNELS),
        "layers": lambda v: _check_int(v, 2, MAX_LAYERS),
        "filters": lambda v: _check_int(v, 1, MAX_KERNEL_SIZE**2),
        "filter_size": lambda v: _check_int(v, 2, MAX_KERNEL_SIZE),
        "start_weight": positive,
        "image_channels": lambda v: _check_int(v, 1, 3),
        "activation": activation,
        "start": _check_start,
        "residual_input": _check_type(bool),
    }


def checked_hqs_config(values: Any) -> HQSConfig:
    """An HQSConfig from the JSON values a file declares: every field present, of its type, within
    the limits; else a one-line ValueError saying what is wrong.

    >>> checked_hqs_config({**HQSConfig().to_dict(), "layers": 1000})
    Traceback (most recent call last):
    ...
    ValueError: config field layers must be in 2..64, got 1000
    """
    from pydeblur.weights_io import _one_line, check_declared_fields

    check_declared_fields(values, _field_checks())
    try:
        return HQSConfig.from_dict(values)
    except ValueError as error:
        raise ValueError(f"bad config: {_one_line(error)}") from None


def hqs_tensor_shapes(config: HQSConfig) -> dict[str, tuple[int, ...]]:
    """The shape of every tensor in `HQSNet(config).state_dict()`, computed without building it
    (a start model's from its shipped file's header).

    >>> shapes = hqs_tensor_shapes(HQSConfig(stages=1, channels=8, layers=2))
    >>> shapes["stages.0.filters"], shapes["stages.0.cnn.convs.0.weight"]
    ((24, 5, 5), (8, 4, 3, 3))
    """
    from pydeblur.weights_io import _tensor_shapes, resolve_weights

    image = config.image_channels
    inputs = image + 1 + (image if config.residual_input else 0)
    widths = [inputs] + [config.channels] * (config.layers - 1) + [image]
    shapes: dict[str, tuple[int, ...]] = {}
    for t in range(config.stages):
        name = f"stages.{t}"
        shapes[f"{name}.filters"] = (config.filters, config.filter_size, config.filter_size)
        shapes[f"{name}.log_weight"] = ()
        shapes[f"{name}.weight_slope"] = ()
        for j, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            shapes[f"{name}.cnn.convs.{j}.weight"] = (b, a, 3, 3)
            shapes[f"{name}.cnn.convs.{j}.bias"] = (b,)
    if config.start != "blurred":
        start = _header_config(resolve_weights(config.start))
        shapes.update({f"start.{k}": v for k, v in _tensor_shapes(start).items()})
    return shapes


def _header_config(path: Path):
    """A DeblurNet weights file's checked config (for an HQSNet's start model)."""
    from pydeblur.weights_io import _parse_config

    with safe_open(str(path), framework="pt", device="cpu") as f:
        return _parse_config((f.metadata() or {}).get("config", ""))


def load_hqs(path: str | os.PathLike, device: str | torch.device = "cpu") -> HQSNet:
    """An `HQSNet` (eval mode) from a file `save_hqs` wrote; see the module docstring for the checks.

    >>> import tempfile
    >>> path = save_hqs(HQSNet(HQSConfig(stages=1)), Path(tempfile.mkdtemp()) / "a.safetensors", {})
    >>> net = load_hqs(path)
    >>> net.training, net(torch.rand(1, 3, 24, 24), torch.full((1, 1, 5, 5), 1 / 25)).shape
    (False, torch.Size([1, 3, 24, 24]))
    """
    from pydeblur.weights_io import (
        MAX_CONFIG_CHARS,
        _one_line,
        _read_card_file,
        card_path,
        check_declared_tensors,
    )

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            if not is_hqs_header(metadata) or "config" not in metadata:
                raise ValueError(f"{path} is not an HQSNet weights file (no {HQS_FORMAT} header)")
            text = metadata["config"]
            if len(text) > MAX_CONFIG_CHARS:
                raise ValueError(f"{path}: the config is {len(text)} characters long")
            legacy = metadata.get("format") != HQS_FORMAT
            try:
                declared = json.loads(text)
                # a legacy file lacks the fields added after it: it was trained at their defaults
                filled = declared
                if legacy and isinstance(declared, dict):
                    filled = {**HQSConfig().to_dict(), **declared}
                config = checked_hqs_config(filled)
            except (ValueError, RecursionError) as error:
                raise ValueError(f"{path}: {_one_line(error)}") from None
            names = set(f.keys())
            shapes = hqs_tensor_shapes(config)
            # a legacy file may lack the slopes, which came later
            absent = {k for k in shapes if k.endswith("weight_slope")} - names if legacy else set()
            check_declared_tensors(path, f, {k: v for k, v in shapes.items() if k not in absent})
            tensors = {key: f.get_tensor(key) for key in names}
    except SafetensorError as error:
        raise ValueError(
            f"{path} is not a readable safetensors file ({_one_line(error)})"
        ) from None
    card_file = card_path(path)
    if card_file.exists() and _read_card_file(card_file).get("config") != declared:
        raise ValueError(f"the card {card_file} describes another config than {path}")
    model = HQSNet(config)
    for name in absent:  # files from before the slope: b_t = 0, the same model
        tensors[name] = torch.zeros(())
    model.load_state_dict(tensors)
    return model.to(device).eval()
