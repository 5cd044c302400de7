"""pydeblur's operators: C++ (CPU) and CUDA kernels registered with torch.library.

from pydeblur.ops import wiener_bank, bilateral_filter, ssim, ssim_loss
"""

from pydeblur.ops._checks import skip_value_checks
from pydeblur.ops.bilateral import bilateral_filter as bilateral_filter

__all__ = ["skip_value_checks"]
