"""pydeblur: non-blind image deblurring with a Wiener-deconvolution bank and a ResBlock CNN.

>>> import pydeblur
>>> blurry, sample_type = pydeblur.read_image(pydeblur.DEMO_PHOTO)
>>> sharp = pydeblur.deblur(blurry, pydeblur.read_psf(pydeblur.DEMO_PSF), device="cpu")
>>> sharp.shape == blurry.shape
True
"""

from pathlib import Path

__version__ = "0.1.0"

DEMO_PHOTO = Path(__file__).resolve().parent / "assets" / "demo.png"
DEMO_PSF = DEMO_PHOTO.with_name("demo_psf.npy")

# name -> the module that defines it; imported on first use, so that `import pydeblur` stays light
# (no torch, no compiled operators) until one of them is used.
_EXPORTS = {
    "deblur": "pydeblur.restore",
    "Deblurrer": "pydeblur.restore",
    "estimate_noise": "pydeblur.restore",
    "read_image": "pydeblur.io",
    "write_image": "pydeblur.io",
    "read_psf": "pydeblur.kernel_io",
    "write_psf": "pydeblur.kernel_io",
    "load_model": "pydeblur.weights_io",
}

__all__ = ["DEMO_PHOTO", "DEMO_PSF", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'pydeblur' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
