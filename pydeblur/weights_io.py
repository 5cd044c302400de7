"""Weights files: safetensors with the configuration in the header and a JSON model card beside them.

`save_weights` writes both atomically; `load_model` checks the header's configuration (JSON, types,
the limits below) and every tensor's declared name, shape and dtype against what that configuration
implies before it reads a tensor or builds a network, so an untrusted file can neither unpickle, nor
allocate gigabytes, nor hang. Shipped weights live in `WEIGHTS_DIR` and are loaded by name.
"""

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from pydeblur.atomic import atomic_path
from pydeblur.features import feature_channels
from pydeblur.hqs import HQSNet
from pydeblur.model import CONDITIONING_HIDDEN, MAX_STAGES, DeblurNet, ModelConfig, get_config

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
FORMAT = "pydeblur.DeblurNet/1"

# What a weights file (header or model card) may declare: `load_model` refuses anything beyond these
# before building or reading anything, so an untrusted file cannot make it allocate gigabytes or hang.
# Generous: every config in `CONFIGS` and any plausible trained model fit well inside.
MAX_BLOCKS = 64
MAX_CHANNELS = 512
MAX_KERNEL_SIZE = 15  # odd, as ModelConfig requires
MAX_SNRS = 64  # the Wiener bank's size (the paper: 15)
MAX_ABS_SNR = 1000.0  # |snr_db| values, decibels or ratios
MAX_IMAGE_CHANNELS = 16
MAX_MARGIN = 1024  # boundary padding per side, pixels
MAX_CONTEXT_LEVELS = 4  # ModelConfig's own limit
MAX_CONFIG_CHARS = 1 << 16  # the header's JSON config (a real one: under 1 KiB)
MAX_CARD_BYTES = 1 << 24  # the JSON model card (a real one: a few KiB)
# Fields added to ModelConfig after weights were first shipped: a file without them has their defaults.
LATER_FIELDS = {
    f.name: f.default
    for f in dataclasses.fields(ModelConfig)
    if f.name
    in (
        "stages",
        "stage_channels",
        "stage_levels",
        "stage_strength",
        "boundary_adjustment",
        "noise_conditioning",
    )
}
WEIGHTS_DTYPE = "F32"  # the safetensors dtype of every tensor `save_weights` writes


def _short(value: Any, limit: int = 60) -> str:
    """repr(value) on one line, cut to about `limit` characters, for error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _check_int(value: Any, low: int, high: int) -> str | None:
    if not isinstance(value, int) or isinstance(value, bool):
        return f"must be an integer, got {_short(value)}"
    if not low <= value <= high:
        return f"must be in {low}..{high}, got {_short(value)}"
    return None


def _check_number(value: Any) -> str | None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return f"must be a number, got {_short(value)}"
    try:
        float(value)
    except OverflowError:  # an int beyond float's range: ModelConfig's math.isfinite would raise
        return f"must be a number within float's range, got {_short(value)}"
    return None


def _check_type(kind: type) -> Any:
    def check(value: Any) -> str | None:
        if not isinstance(value, kind):
            return f"must be a {kind.__name__}, got {_short(value)}"
        return None

    return check


def _check_snr_db(value: Any) -> str | None:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_SNRS:
        return f"must be a list of 1..{MAX_SNRS} numbers, got {_short(value)}"
    for v in value:
        if _check_number(v) or not abs(v) <= MAX_ABS_SNR:  # also refuses nan and inf
            return f"must hold finite numbers within +-{MAX_ABS_SNR:g}, got {_short(v)}"
    return None


# The type and limit check of each ModelConfig field as a file declares it (JSON values); ModelConfig's
# own checks (odd kernel_size, dropout range, head and snr_mode names, ...) run after these.
_FIELD_CHECKS = {
    "blocks": lambda v: _check_int(v, 0, MAX_BLOCKS),
    "channels": lambda v: _check_int(v, 1, MAX_CHANNELS),
    "kernel_size": lambda v: _check_int(v, 1, MAX_KERNEL_SIZE),
    "snr_db": _check_snr_db,
    "snr_mode": _check_type(str),
    "dropout": _check_number,
    "head": _check_type(str),
    "bilateral_tail": _check_type(bool),
    "normalize_input": _check_type(bool),
    "learn_nsr": _check_type(bool),
    "clamp_features": _check_type(bool),
    "boundary_adjustment": _check_type(bool),
    "margin": lambda v: None if v is None else _check_int(v, 1, MAX_MARGIN),
    "context_levels": lambda v: _check_int(v, 0, MAX_CONTEXT_LEVELS),
    "data_consistency": _check_number,
    "stages": lambda v: _check_int(v, 0, MAX_STAGES),
    "stage_channels": lambda v: _check_int(v, 1, MAX_CHANNELS),
    "stage_levels": lambda v: _check_int(v, 0, MAX_CONTEXT_LEVELS),
    "stage_strength": _check_number,
    "noise_conditioning": _check_type(bool),
    "image_channels": lambda v: _check_int(v, 1, MAX_IMAGE_CHANNELS),
}


def check_declared_fields(values: Any, checks: dict[str, Any]) -> None:
    """The JSON values a file declares for a config: a JSON object holding exactly the fields of
    `checks` (name -> check(value) -> problem or None), each passing its check; else a one-line
    ValueError saying what is wrong (`hqs_io` checks HQSNet configs with it too).

    >>> check_declared_fields({"blocks": -1}, {"blocks": _FIELD_CHECKS["blocks"]})
    Traceback (most recent call last):
    ...
    ValueError: config field blocks must be in 0..64, got -1
    """
    if not isinstance(values, dict):
        raise ValueError(f"the config must be a JSON object, got {_short(values)}")
    missing, unknown = sorted(set(checks) - set(values)), sorted(set(values) - set(checks))
    if missing or unknown:
        raise ValueError(f"config fields missing: {_short(missing)}, unknown: {_short(unknown)}")
    for name in sorted(checks):
        problem = checks[name](values[name])
        if problem:
            raise ValueError(f"config field {name} {problem}")


def _checked_config(values: Any) -> ModelConfig:
    """A ModelConfig from the JSON values a file declares: every field present, of its type, within the
    limits above; else a one-line ValueError saying what is wrong."""
    if isinstance(values, dict):
        values = {**LATER_FIELDS, **values}
    check_declared_fields(values, _FIELD_CHECKS)
    try:
        return ModelConfig(**values)
    except ValueError as error:
        raise ValueError(f"bad config: {_one_line(error)}") from None


def _parse_config(text: str) -> ModelConfig:
    """`_checked_config` of a JSON text (the safetensors header's "config")."""
    if len(text) > MAX_CONFIG_CHARS:
        raise ValueError(f"the config is {len(text)} characters long (at most {MAX_CONFIG_CHARS})")
    try:
        values = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise ValueError(f"the config is not JSON ({_one_line(error)})") from None
    return _checked_config(values)


def _read_card_file(path: Path) -> dict[str, Any]:
    """A model card's JSON object, or a one-line ValueError naming the file."""
    if path.stat().st_size > MAX_CARD_BYTES:
        raise ValueError(f"the model card {path} is larger than {MAX_CARD_BYTES} bytes")
    try:
        card = json.loads(path.read_bytes())
    except (ValueError, RecursionError) as error:  # JSONDecodeError, UnicodeDecodeError
        raise ValueError(f"the model card {path} is not JSON ({_one_line(error)})") from None
    if not isinstance(card, dict):
        raise ValueError(f"the model card {path} is not a JSON object")
    return card


def _tensor_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """The shape of every tensor in `DeblurNet(config).state_dict()`, computed without building it.

    (Building it on the meta device would do, but its nsr step there imports torch._dynamo: seconds
    and ~160 MB on first use.) tests/test_weights_safety.py checks the two agree.
    """
    c, k, num_snr = config.channels, config.kernel_size, len(config.snr_db)
    shapes: dict[str, tuple[int, ...]] = {"log_nsr": (num_snr,)}

    def conv(name: str, out_channels: int, in_channels: int, size: int) -> None:
        shapes[f"{name}.weight"] = (out_channels, in_channels, size, size)
        shapes[f"{name}.bias"] = (out_channels,)

    conv("conv_in", c, feature_channels(num_snr, config.image_channels), k)
    widths = [c * min(2**level, 4) for level in range(config.context_levels + 1)]
    for level in range(config.context_levels):
        conv(f"context.down.{level}.0", widths[level + 1], widths[level], 3)
        conv(f"context.down.{level}.2", widths[level + 1], widths[level + 1], 3)
        conv(f"context.up.{level}", widths[level], widths[level + 1], 3)
    for block in range(config.blocks):
        conv(f"blocks.{block}.conv1", c, c, k)
        conv(f"blocks.{block}.conv2", c, c, k)
    out_channels = config.image_channels + (1 + num_snr if config.head == "mix" else 0)
    conv("conv_out", out_channels, c, k)
    if config.noise_conditioning:
        hidden = CONDITIONING_HIDDEN
        shapes.update(
            {"conditioning.mlp.0.weight": (hidden, 2), "conditioning.mlp.0.bias": (hidden,)}
        )
        film = (config.blocks + 1) * 2 * c
        shapes.update(
            {"conditioning.mlp.2.weight": (film, hidden), "conditioning.mlp.2.bias": (film,)}
        )
    stage_in = 2 * config.image_channels + 1
    widths = [config.stage_channels * 2**level for level in range(config.stage_levels + 1)]
    for index in range(config.stages):
        name = f"stages.stages.{index}"
        shapes[f"{name}.log_strength"] = ()
        conv(f"{name}.unet.conv_in", widths[0], stage_in, 3)
        for level in range(config.stage_levels):
            for side in ("encode", "decode"):
                conv(f"{name}.unet.{side}.{level}.conv1", widths[level], widths[level], 3)
                conv(f"{name}.unet.{side}.{level}.conv2", widths[level], widths[level], 3)
            conv(f"{name}.unet.down.{level}", widths[level + 1], widths[level], 3)
            # a transposed convolution's weight is [in, out, k, k]
            shapes[f"{name}.unet.up.{level}.weight"] = (widths[level + 1], widths[level], 2, 2)
            shapes[f"{name}.unet.up.{level}.bias"] = (widths[level],)
        conv(f"{name}.unet.bottom.conv1", widths[-1], widths[-1], 3)
        conv(f"{name}.unet.bottom.conv2", widths[-1], widths[-1], 3)
        conv(f"{name}.unet.conv_out", config.image_channels, widths[0], 3)
    return shapes


def card_path(weights_path: str | os.PathLike) -> Path:
    """The JSON model card beside a weights file: same name, .json.

    >>> card_path("runs/net.safetensors").name
    'net.json'
    """
    return Path(weights_path).with_suffix(".json")


def save_weights(model: DeblurNet, path: str | os.PathLike, card: dict[str, Any]) -> Path:
    """Write model's weights to path (.safetensors) and its model card beside it (.json), atomically.

    card: free-form facts (data, seed, steps, metrics, ...); the configuration is added to it and to
    the safetensors header, where `load_model` checks it.

    >>> import tempfile
    >>> path = save_weights(DeblurNet("tiny"), Path(tempfile.mkdtemp()) / "tiny.safetensors", {"seed": 0})
    >>> load_model(path).config == get_config("tiny"), read_card(path)["seed"]
    (True, 0)
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"path must end in .safetensors, got {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    config = model.config.to_dict()
    tensors = {
        k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()
    }
    metadata = {"format": FORMAT, "config": json.dumps(config, sort_keys=True)}
    full_card = {**card, "format": FORMAT, "config": config}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    with atomic_path(card_path(path)) as tmp:
        tmp.write_text(json.dumps(full_card, indent=2, sort_keys=True))
    return path


def resolve_weights(name_or_path: str | os.PathLike) -> Path:
    """A weights path: an existing file as given, else `pydeblur/weights/<name>.safetensors`.

    >>> resolve_weights("default") == WEIGHTS_DIR / "default.safetensors"
    True
    """
    path = Path(name_or_path)
    if path.suffix == ".safetensors" or path.exists() or os.sep in str(name_or_path):
        if not path.exists():
            raise FileNotFoundError(f"weights file not found: {path}")
        return path
    shipped = WEIGHTS_DIR / f"{name_or_path}.safetensors"
    if not shipped.exists():
        names = sorted(p.stem for p in WEIGHTS_DIR.glob("*.safetensors"))
        raise FileNotFoundError(
            f"no shipped weights named {name_or_path!r} (have: {', '.join(names) or 'none'})"
        )
    return shipped


def read_card(name_or_path: str | os.PathLike) -> dict[str, Any]:
    """The model card (JSON) of a weights file or shipped name.

    >>> card = read_card("default")
    >>> card["format"], card["config"]["head"]
    ('pydeblur.DeblurNet/1', 'mix')
    """
    path = card_path(resolve_weights(name_or_path))
    if not path.exists():
        raise FileNotFoundError(f"model card not found beside the weights: {path}")
    return _read_card_file(path)


def load_model(
    name_or_path: str | os.PathLike = "default",
    device: str | torch.device = "cpu",
    config: ModelConfig | str | None = None,
) -> DeblurNet | HQSNet:
    """Build a DeblurNet from a safetensors file (or a shipped name such as "default"), in eval mode;
    a file of `pydeblur.hqs_io`'s format gives an HQSNet (checked there the same way).

    The configuration comes from the file's header and must agree with the model card and, when given,
    with `config`; every tensor must have the shape that configuration implies. Never unpickles. The
    file is untrusted: its config is checked against the `MAX_*` limits and every tensor's declared
    shape and dtype against the config before any tensor is read or anything is built. A bad file
    raises a one-line ValueError naming it.

    >>> net = load_model("default")
    >>> blurred, psf = torch.rand(1, 3, 32, 32), torch.full((1, 1, 5, 5), 1 / 25)
    >>> net.training, net(blurred, psf).shape
    (False, torch.Size([1, 3, 32, 32]))
    """
    from pydeblur.hqs_io import is_hqs, load_hqs

    path = resolve_weights(name_or_path)
    if is_hqs(path):
        if config is not None:
            raise ValueError(f"{path} holds an HQSNet, not a DeblurNet of config {config}")
        return load_hqs(path, device)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            if metadata.get("format") != FORMAT or "config" not in metadata:
                raise ValueError(
                    f"{path} is not a pydeblur DeblurNet weights file (no {FORMAT} header)"
                )
            try:
                stored = _parse_config(metadata["config"])
            except ValueError as error:
                raise ValueError(f"{path}: {error}") from None
            _check_card(path, stored)
            if config is not None:
                expected = get_config(config) if isinstance(config, str) else config
                if expected != stored:
                    raise ValueError(
                        f"{path} holds a model of config {stored}, which does not match the "
                        f"requested {expected}"
                    )
            check_declared_tensors(path, f, _tensor_shapes(stored))
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except SafetensorError as error:
        raise ValueError(
            f"{path} is not a pydeblur weights file (not a readable safetensors file: {_one_line(error)})"
        ) from None
    model = DeblurNet(stored)
    model.load_state_dict(tensors)
    return model.to(device).eval()


def _check_card(path: Path, stored: ModelConfig) -> None:
    """The model card beside `path`, when there is one, must be JSON and describe the config `stored`."""
    card_file = card_path(path)
    if not card_file.exists():
        return
    card = _read_card_file(card_file)
    try:
        card_config = _checked_config(card.get("config"))
    except ValueError as error:
        raise ValueError(f"the model card {card_file}: {error}") from None
    if card_config != stored:
        raise ValueError(f"the model card {card_file} describes another config than {path}")


def check_declared_tensors(path: Path, f: Any, shapes: dict[str, tuple[int, ...]]) -> None:
    """Every tensor's name, shape and dtype in the open safetensors file `f`'s header (no data read)
    must be those of `shapes` (`hqs_io` checks HQSNet files with it too).

    >>> path = resolve_weights("default")
    >>> with safe_open(str(path), framework="pt") as f:
    ...     shapes = {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}
    ...     check_declared_tensors(path, f, shapes)  # as declared: no error
    ...     check_declared_tensors(path, f, {**shapes, "log_nsr": (3,)})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: ...: tensor log_nsr has shape (15,), its config implies (3,)
    """
    names = set(f.keys())
    if names != set(shapes):
        raise ValueError(
            f"{path}: tensor names do not match its config (missing "
            f"{_short(sorted(set(shapes) - names), 200)}, unexpected "
            f"{_short(sorted(names - set(shapes)), 200)})"
        )
    for key in sorted(names):
        declared = f.get_slice(key)
        shape, dtype = tuple(declared.get_shape()), declared.get_dtype()
        if shape != shapes[key]:
            raise ValueError(
                f"{path}: tensor {key} has shape {shape}, its config implies {shapes[key]}"
            )
        if dtype != WEIGHTS_DTYPE:
            raise ValueError(f"{path}: tensor {key} has dtype {dtype}, expected {WEIGHTS_DTYPE}")
