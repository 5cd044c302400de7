"""Input checks shared by the operators: each raises an error that names the offending argument.

The Python wrappers own the checks users hit: types, shapes as given, devices and values (argument
ranges, finite tensors, signs), as TypeError and ValueError. The C++ operators check only what their
kernels index memory by (ranks, matching shapes, dtypes, devices, window sizes against the kernels'
arrays), with TORCH_CHECK_VALUE, a ValueError here, for direct `torch.ops.pydeblur.*` calls; the
kernels' limits are defined there and read by `_library`.
"""

import contextlib
from collections.abc import Callable

import torch

from pydeblur.ops._library import HAS_CUDA_KERNELS

_checks_enabled = True


@contextlib.contextmanager
def skip_value_checks():
    """Skip the checks that read tensor values (finiteness, signs), which synchronise a GPU.

    Shape, dtype and device checks always run.

    >>> with skip_value_checks():
    ...     value_checks_enabled()
    False
    >>> value_checks_enabled()
    True
    """
    global _checks_enabled
    previous, _checks_enabled = _checks_enabled, False
    try:
        yield
    finally:
        _checks_enabled = previous


def value_checks_enabled() -> bool:
    """Whether value checks run: not inside `skip_value_checks`, nor while torch.compile traces.

    >>> value_checks_enabled()
    True
    """
    return _checks_enabled and not torch.compiler.is_compiling()


def check_float(name: str, t: torch.Tensor) -> None:
    """Raise TypeError naming `name` unless t is a floating-point torch.Tensor (any shape).

    >>> check_float("x", torch.zeros(2, 2, dtype=torch.int64))
    Traceback (most recent call last):
    ...
    TypeError: x must be a floating-point tensor, got torch.int64
    """
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {t.dtype}")


def check_window_size(name: str, size: int, maximum: int) -> None:
    """An odd int window side in 3..maximum (the kernels' limit, read from C++ by _library).

    >>> check_window_size("window_size", 4, 31)
    Traceback (most recent call last):
    ...
    ValueError: window_size must be odd and within 3..31, got 4
    """
    if isinstance(size, bool) or not isinstance(size, int):
        raise TypeError(f"{name} must be an int, got {type(size).__name__}")
    if size % 2 == 0 or not 3 <= size <= maximum:
        raise ValueError(f"{name} must be odd and within 3..{maximum}, got {size}")


def check_ndim(name: str, t: torch.Tensor, ndim: int, layout: str) -> None:
    """Raise ValueError naming `name` and its `layout` unless t has `ndim` dimensions.

    >>> check_ndim("x", torch.zeros(3, 8, 8), 4, "[B, C, H, W]")
    Traceback (most recent call last):
    ...
    ValueError: x must be [B, C, H, W] (4-D), got shape (3, 8, 8)
    """
    if t.dim() != ndim:
        raise ValueError(f"{name} must be {layout} ({ndim}-D), got shape {tuple(t.shape)}")


class ValueChecks:
    """Checks that read tensor values, collected as booleans on the tensors' device and read back
    together: one GPU synchronisation per operator call instead of one per check (a `wiener_bank`
    call made six). Errors are raised in the order the checks were added.

    >>> checks = ValueChecks()
    >>> checks.finite("y", torch.tensor([1.0, float("nan")]))
    >>> checks.require(torch.tensor(True), lambda: ValueError("never raised"))
    >>> checks.run()
    Traceback (most recent call last):
    ...
    ValueError: y contains NaN or infinite values
    """

    def __init__(self) -> None:
        self.enabled = value_checks_enabled()
        self._flags: list[torch.Tensor] = []
        self._errors: list[Callable[[], Exception]] = []

    def require(self, ok: torch.Tensor, error: Callable[[], Exception]) -> None:
        """ok: a one-element boolean tensor; error: builds the exception raised when ok is False."""
        if self.enabled:
            self._flags.append(ok.reshape(()))
            self._errors.append(error)

    def finite(self, name: str, t: torch.Tensor) -> None:
        """One pass over t (aminmax propagates NaN), instead of the five of isfinite(t).all(): on
        the CPU that was a fifth of bilateral_filter's forward. x * 0 is 0 for finite x, NaN
        otherwise."""
        if self.enabled and t.numel() > 0:
            low, high = torch.aminmax(t.detach())
            self.require(
                low * 0 + high * 0 == 0,
                lambda: ValueError(f"{name} contains NaN or infinite values"),
            )

    def run(self) -> None:
        if not self._flags:
            return
        passed = torch.stack([f.to(self._flags[0].device) for f in self._flags]).tolist()
        for ok, error in zip(passed, self._errors, strict=True):
            if not ok:
                raise error()


def check_finite(*named: tuple[str, torch.Tensor]) -> None:
    """Raises ValueError naming the first of the (name, tensor) pairs that holds NaN or inf.

    >>> check_finite(("x", torch.zeros(2)), ("psf", torch.tensor([1.0, float("inf")])))
    Traceback (most recent call last):
    ...
    ValueError: psf contains NaN or infinite values
    """
    checks = ValueChecks()
    for name, t in named:
        checks.finite(name, t)
    checks.run()


def check_device(name: str, t: torch.Tensor) -> None:
    """Raise RuntimeError naming `name` unless t is on a device the compiled kernels cover (CPU,
    CUDA when built with it, or meta).

    >>> check_device("x", torch.zeros(1))  # the CPU: always covered
    """
    if t.device.type == "cuda" and not HAS_CUDA_KERNELS:
        raise RuntimeError(
            f"{name} is a CUDA tensor but pydeblur was built without its CUDA kernels; rebuild with "
            "`FORCE_CUDA=1 pip install --no-build-isolation -e .` where nvcc is installed"
        )
    if t.device.type not in ("cpu", "cuda", "meta"):
        raise RuntimeError(f"{name} is on {t.device}; pydeblur's operators run on CPU and CUDA")


def check_same_device(**tensors: torch.Tensor) -> None:
    """Raise ValueError listing each named tensor's device unless they are all on one.

    >>> check_same_device(y=torch.zeros(1), psf=torch.zeros(1, device="meta"))
    Traceback (most recent call last):
    ...
    ValueError: tensors must be on one device: y on cpu, psf on meta
    """
    devices = {name: t.device for name, t in tensors.items()}
    if len(set(devices.values())) > 1:
        listed = ", ".join(f"{name} on {device}" for name, device in devices.items())
        raise ValueError(f"tensors must be on one device: {listed}")


def compute_dtype(t: torch.Tensor) -> torch.dtype:
    """float64 stays float64; float32, float16 and bfloat16 are computed in float32.

    >>> compute_dtype(torch.zeros(1, dtype=torch.bfloat16)), compute_dtype(torch.zeros(1).double())
    (torch.float32, torch.float64)
    """
    return torch.float64 if t.dtype == torch.float64 else torch.float32
