"""pydeblur's operators: C++ (CPU) and CUDA kernels registered with torch.library.

from pydeblur.ops import wiener_bank, bilateral_filter, ssim, ssim_loss
"""

from pydeblur.ops._checks import skip_value_checks
from pydeblur.ops.bilateral import bilateral_filter
from pydeblur.ops.ssim import ssim, ssim_loss
from pydeblur.ops.wiener import wiener_bank

__all__ = [
    "skip_value_checks",
    "wiener_bank",
    "bilateral_filter",
    "ssim",
    "ssim_loss",
]
