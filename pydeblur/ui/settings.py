"""What the page sends, checked: the kernel (a parametric spec, the uploaded kernel file or the
point light), the noise level and the strength; and the `pydeblur deblur` command line that applies
the same settings to files.

A request's settings are JSON: {"kernel": {"kind": "motion", "length": 15, "angle": 30},
"noise": "auto" or a number in [0, 1], "strength": a positive number}. Kinds and their numbers:
motion (length, angle), defocus (radius), gaussian (sigma, sigma2, angle), file (the uploaded kernel
file), point (the kernel of the point light boxed on the photo). Parametric kernels become the same
text specs the command line takes (`pydeblur.kernels.parse_psf_spec`), so the page and the command
line make the same kernel.
"""

from __future__ import annotations

import argparse
import math
import shlex
from dataclasses import dataclass
from pathlib import PurePath

# kind -> the numbers of its spec, in the spec's order (the optional ones may be left out)
PARAMETRIC = {
    "motion": ("length", "angle"),
    "defocus": ("radius",),
    "gaussian": ("sigma", "sigma2", "angle"),
}
KINDS = (*PARAMETRIC, "file", "point")


@dataclass(frozen=True)
class Settings:
    """Checked settings: the kernel's kind, its spec (parametric kinds; None for file and point),
    the noise sigma (None: estimate it from the photo) and the strength.

    >>> Settings("motion", "motion:15,30", None, 1.0).spec
    'motion:15,30'
    """

    kind: str
    spec: str | None
    noise: float | None
    strength: float


def _number(fields: dict, name: str, required: bool) -> float | None:
    value = fields.get(name)
    if value is None or value == "":
        if required:
            raise ValueError(f"kernel {name} is missing")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"kernel {name} must be a number, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"kernel {name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"kernel {name} must be finite, got {value!r}")
    return number


def kernel_spec(kernel: dict) -> str | None:
    """The text spec of a parametric kernel (`pydeblur.kernels.parse_psf_spec`'s form), None for
    the kinds "file" and "point"; the first number is required, the others optional.

    >>> kernel_spec({"kind": "motion", "length": 15, "angle": 30})
    'motion:15,30'
    >>> kernel_spec({"kind": "gaussian", "sigma": 2.5}), kernel_spec({"kind": "file"})
    ('gaussian:2.5', None)
    """
    if not isinstance(kernel, dict):
        raise ValueError(f"kernel must be an object with a kind, got {kernel!r}")
    kind = kernel.get("kind")
    if kind not in KINDS:
        raise ValueError(f"kernel kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind not in PARAMETRIC:
        return None
    names = PARAMETRIC[kind]
    numbers = [_number(kernel, name, required=index == 0) for index, name in enumerate(names)]
    if kind == "gaussian" and numbers[1] is None and numbers[2] is not None:
        numbers[1] = numbers[0]  # an angle without sigma2: the spec needs sigma2 before it
    while numbers[-1] is None:
        numbers.pop()
    return f"{kind}:" + ",".join(f"{number:g}" for number in numbers)


def _checked(parse, name: str, value) -> float | None:
    """The command line's own check (`pydeblur.cli.deblur_cmd.parse_noise` / `parse_strength`), its
    message naming the setting."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        return parse(str(value))
    except argparse.ArgumentTypeError as error:
        raise ValueError(f"{name} {error}") from None


def parse_settings(body) -> Settings:
    """A request's settings checked (one-line ValueError naming the field otherwise).

    >>> parse_settings({"kernel": {"kind": "defocus", "radius": 4}, "noise": 0.01})
    Settings(kind='defocus', spec='defocus:4', noise=0.01, strength=1.0)
    >>> parse_settings({"kernel": {"kind": "motion", "length": 9}, "strength": "-1"})
    Traceback (most recent call last):
    ValueError: strength must be a positive number, got '-1'
    """
    from pydeblur.cli.deblur_cmd import parse_noise, parse_strength

    if not isinstance(body, dict):
        raise ValueError("the settings must be a JSON object")
    kernel = body.get("kernel")
    spec = kernel_spec(kernel)
    noise = _checked(parse_noise, "noise", body.get("noise", "auto"))
    strength = _checked(parse_strength, "strength", body.get("strength", 1.0))
    return Settings(kernel["kind"], spec, noise, strength)


def output_name(photo_name: str) -> str:
    """The name `pydeblur deblur` is shown writing: the photo's with `_deblurred` before its suffix.

    >>> output_name("holiday.JPG"), output_name("scan")
    ('holiday_deblurred.JPG', 'scan_deblurred.png')
    """
    path = PurePath(photo_name)
    return f"{path.stem}_deblurred{path.suffix or '.png'}"


def command_line(
    settings: Settings,
    photo_name: str,
    kernel_name: str | None = None,
    box: tuple[int, int, int, int] | None = None,
    model: str = "default",
) -> str:
    """The shell command that deblurs `photo_name` as the page does: `pydeblur deblur` with its
    --psf, --noise, --strength and --model (defaults left out); for a point light, the `pydeblur psf
    --from-photo` command that writes its kernel first. Names are shell-quoted.

    >>> command_line(Settings("motion", "motion:15,30", 0.01, 1.5), "my photo.png")
    "pydeblur deblur 'my photo.png' --psf motion:15,30 --noise 0.01 --strength 1.5 -o 'my photo_deblurred.png'"
    >>> command_line(Settings("point", None, None, 1.0), "sky.png", box=(10, 20, 31, 31))
    'pydeblur psf --from-photo sky.png --box 10,20,31,31 -o sky_kernel.npy && pydeblur deblur sky.png --psf sky_kernel.npy -o sky_deblurred.png'
    """
    quote = shlex.quote
    first = ""
    if settings.kind == "point":
        if box is None:
            raise ValueError("no point light yet: draw a box around one on the photo")
        kernel = f"{PurePath(photo_name).stem}_kernel.npy"
        boxed = ",".join(str(int(v)) for v in box)
        first = (
            f"pydeblur psf --from-photo {quote(photo_name)} --box {boxed} -o {quote(kernel)} && "
        )
    elif settings.kind == "file":
        if kernel_name is None:
            raise ValueError("no kernel file yet: open one")
        kernel = kernel_name
    else:
        kernel = settings.spec
    words = ["pydeblur", "deblur", quote(photo_name), "--psf", quote(kernel)]
    if settings.noise is not None:
        words += ["--noise", f"{settings.noise:g}"]
    if settings.strength != 1.0:
        words += ["--strength", f"{settings.strength:g}"]
    if model != "default":
        words += ["--model", quote(model)]
    words += ["-o", quote(output_name(photo_name))]
    return first + " ".join(words)
