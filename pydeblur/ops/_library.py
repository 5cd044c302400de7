"""Loads the compiled operator library and says clearly when it cannot."""

import torch

try:
    from pydeblur import _build_info
except ImportError as error:
    raise ImportError(
        "pydeblur's compiled operators are not built: run `pip install -e .` in the source tree"
    ) from error

try:
    from pydeblur import _C  # loading it registers the operators
except ImportError as error:
    raise ImportError(
        f"pydeblur's compiled operators could not be loaded ({error}); they were built against torch "
        f"{_build_info.TORCH_VERSION} and this is torch {torch.__version__}. Rebuild them with "
        "`pip install --no-build-isolation -e .`"
    ) from error

if _build_info.TORCH_VERSION != torch.__version__:
    raise ImportError(
        f"pydeblur's compiled operators were built against torch {_build_info.TORCH_VERSION} but this "
        f"is torch {torch.__version__}: rebuild them with `pip install --no-build-isolation -e .`"
    )

HAS_CUDA_KERNELS: bool = _build_info.WITH_CUDA

# The kernels' limits, defined once, in C++ (csrc/include/pydeblur/<op>_math.h), and exported by the
# compiled library (csrc/ops.cpp): the wrappers check them, the C++ operators enforce them.
try:
    BILATERAL_MAX_KERNEL_SIZE: int = _C.BILATERAL_MAX_KERNEL_SIZE
    SSIM_MAX_WINDOW: int = _C.SSIM_MAX_WINDOW
except AttributeError as error:
    raise ImportError(
        f"pydeblur's compiled operators are older than its Python code ({error}): rebuild them with "
        "`pip install --no-build-isolation -e .`"
    ) from error
