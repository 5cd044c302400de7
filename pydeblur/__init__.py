"""pydeblur: non-blind image deblurring with a Wiener-deconvolution bank and a ResBlock CNN."""

__version__ = "0.1.0"

__all__ = ["deblur"]


def __getattr__(name: str):
    # Lazy, so that `import pydeblur` stays light (no torch, no compiled operators) until deblur is used.
    if name == "deblur":
        from pydeblur.restore import deblur

        return deblur
    raise AttributeError(f"module 'pydeblur' has no attribute {name!r}")
