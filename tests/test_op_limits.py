"""The operators' limits and names: each limit is defined once in C++, read by the Python wrappers,
and enforced at the same value on both sides; the backward operators are private."""

import importlib

import pytest
import torch

from pydeblur import _C
from pydeblur.ops import bilateral_filter, ssim
from pydeblur.ops._library import BILATERAL_MAX_KERNEL_SIZE, SSIM_MAX_WINDOW
from tests.helpers import cpu_and_cuda

bilateral_module = importlib.import_module("pydeblur.ops.bilateral")
ssim_module = importlib.import_module("pydeblur.ops.ssim")


def test_python_reads_its_limits_from_the_compiled_library():
    assert (
        bilateral_module.MAX_KERNEL_SIZE
        == BILATERAL_MAX_KERNEL_SIZE
        == _C.BILATERAL_MAX_KERNEL_SIZE
    )
    assert ssim_module.MAX_WINDOW == SSIM_MAX_WINDOW == _C.SSIM_MAX_WINDOW


def test_limits_are_the_documented_ones():
    """docs/bilateral_filter.md, docs/ssim.md and the docstrings give these values: update them with
    kMaxKernelSize (bilateral_math.h) or kMaxWindow (ssim_math.h)."""
    assert (BILATERAL_MAX_KERNEL_SIZE, SSIM_MAX_WINDOW) == (15, 31)


@pytest.mark.parametrize("device", cpu_and_cuda())
def test_both_sides_enforce_the_bilateral_limit(device):
    largest = BILATERAL_MAX_KERNEL_SIZE
    x = torch.rand(1, 2, largest + 1, largest + 1, device=device)
    bilateral_filter(x, largest)
    torch.ops.pydeblur.bilateral_filter(x, largest, 0.1, 1.0)
    with pytest.raises(ValueError, match=f"kernel_size must be odd and within 3..{largest}"):
        bilateral_filter(x, largest + 2)
    with pytest.raises(ValueError, match=f"kernel_size must be odd and at most {largest}"):
        torch.ops.pydeblur.bilateral_filter(x, largest + 2, 0.1, 1.0)


@pytest.mark.parametrize("device", cpu_and_cuda())
def test_both_sides_enforce_the_ssim_limit(device):
    largest = SSIM_MAX_WINDOW
    x = torch.rand(1, 1, largest, largest, device=device)
    ssim(x, x, window_size=largest, padding="valid")
    torch.ops.pydeblur.ssim_forward(x, x, largest, 1.5, 1.0, True, True)
    with pytest.raises(ValueError, match=f"window_size must be odd and within 3..{largest}"):
        ssim(x, x, window_size=largest + 2)
    with pytest.raises(ValueError, match=f"window_size must be odd and at most {largest}"):
        torch.ops.pydeblur.ssim_forward(x, x, largest + 2, 1.5, 1.0, False, False)


def test_operator_names():
    """One TORCH_LIBRARY (csrc/ops.cpp); the backward operators, which only the registered autograd
    calls, have private names."""
    names = {
        name.split("::", 1)[1]
        for name in torch._C._dispatch_get_all_op_names()
        if name.startswith("pydeblur::")
    }
    assert names == {
        "wiener_bank",
        "_wiener_bank_backward",
        "bilateral_filter",
        "_bilateral_filter_backward",
        "ssim_forward",
        "_ssim_backward",
    }
