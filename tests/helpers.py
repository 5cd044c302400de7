"""Shared by tests and benchmarks: device parametrisation and the shared data folder."""

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("PYDEBLUR_DATA", REPO.parent / "shared" / "data"))


def cpu_and_cuda():
    """Parametrise a test over devices: the CUDA case carries the `cuda` marker."""
    return ("cpu", pytest.param("cuda", marks=pytest.mark.cuda))


def needs_data(*parts: str) -> Path:
    """The path of a shared data folder or file, skipping the test when it is absent."""
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not found: {path}")
    return path


def cuda_usable() -> bool:
    if not torch.cuda.is_available():
        return False
    from pydeblur.ops._library import HAS_CUDA_KERNELS

    return HAS_CUDA_KERNELS


def deblur_args(inputs, psf, output, weights, *extra):
    return ["deblur", *map(str, inputs), "--psf", str(psf), "-o", str(output)] + [
        "--model",
        str(weights),
        "--device",
        "cpu",
        *extra,
    ]
