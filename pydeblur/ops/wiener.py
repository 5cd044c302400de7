"""The Wiener deconvolution bank: S Wiener filters of one blurred image in one fused operator.

x_s = F^-1[conj(K) Y / (|K|^2 + nsr_s)], K = psf2otf(psf, H, W), s = 0..S-1.
"""

from collections.abc import Sequence

import torch

from pydeblur.noise import PAPER_SNR_DB, snr_to_nsr
from pydeblur.ops import _library  # noqa: F401  (registers the compiled operators)
from pydeblur.ops._checks import (
    ValueChecks,
    check_device,
    check_float,
    check_same_device,
    compute_dtype,
)

Numbers = float | Sequence[float] | torch.Tensor


def _psf_as_4d(psf: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """psf [kh, kw], [B, 1, kh, kw] or [B, C, kh, kw] -> [Pb, Pc, kh, kw] with Pb in {1, B}."""
    B, C, H, W = y.shape
    if psf.dim() == 2:
        psf = psf[None, None]
    elif psf.dim() == 4:
        if psf.shape[0] not in (1, B):
            raise ValueError(f"psf batch size {psf.shape[0]} must be 1 or that of y ({B})")
        if psf.shape[1] not in (1, C):
            raise ValueError(f"psf must have 1 or {C} channels (those of y), got {psf.shape[1]}")
    else:
        raise ValueError(
            f"psf must be [kh, kw], [B, 1, kh, kw] or [B, C, kh, kw], got shape {tuple(psf.shape)}"
        )
    kh, kw = psf.shape[-2:]
    if kh == 0 or kw == 0:
        raise ValueError(f"psf is empty, shape {tuple(psf.shape)}")
    if kh > H or kw > W:
        raise ValueError(f"psf ({kh}x{kw}) is larger than the image y ({H}x{W})")
    return psf


def _check_psf_values(psf: torch.Tensor, checks: ValueChecks) -> None:
    if not checks.enabled:
        return
    psf = psf.detach()
    checks.finite("psf", psf)
    checks.require(
        (psf >= 0).all(), lambda: ValueError("psf has negative values; a PSF is non-negative")
    )
    checks.require(
        (psf.sum(dim=(-2, -1)) > 0).all(),
        lambda: ValueError("psf sums to 0; a PSF sums to 1 (normalise it: psf / psf.sum())"),
    )


def _nsr_tensor(
    snr_db: Numbers | None, nsr: Numbers | None, y: torch.Tensor, checks: ValueChecks
) -> torch.Tensor:
    if snr_db is not None and nsr is not None:
        raise ValueError("give snr_db or nsr, not both")
    if nsr is None:
        snr_db = _on_device(PAPER_SNR_DB if snr_db is None else snr_db, y, "snr_db")
        checks.finite("snr_db", snr_db)
        values = snr_to_nsr(snr_db)
        name = "snr_db"
    else:
        values = _on_device(nsr, y, "nsr").reshape(-1)
        name = "nsr"
    if values.numel() == 0:
        raise ValueError(f"{name} is empty")
    checks.finite("nsr", values)
    if checks.enabled:  # no comparison kernels launched when the checks are off (CUDA graphs)
        checks.require(
            (values.detach() > 0).all(),
            lambda: ValueError(f"nsr must be positive, got {values.detach().cpu().tolist()}"),
        )
    return values


def _on_device(value: Numbers, y: torch.Tensor, name: str) -> torch.Tensor:
    if torch.is_tensor(value):
        check_float(name, value)
        if value.dim() > 1:
            raise ValueError(f"{name} must be a number or 1-D, got shape {tuple(value.shape)}")
        check_same_device(y=y, **{name: value})
        return value
    return torch.as_tensor(value, dtype=torch.float64, device=y.device)


def wiener_bank(
    y: torch.Tensor,
    psf: torch.Tensor,
    snr_db: Numbers | None = None,
    nsr: Numbers | None = None,
) -> torch.Tensor:
    """S Wiener deconvolutions of y, one per noise-to-signal ratio, under the circular model.

    Args:
        y: blurred images [B, C, H, W], float32 or float64 (float16/bfloat16 are computed in float32
            and returned in their own dtype).
        psf: [kh, kw] (shared), [B, 1, kh, kw] (one per image) or [B, C, kh, kw]; non-negative,
            centre element (kh // 2, kw // 2); used as given (not normalised: a PSF summing to 1 is the
            caller's job, like skimage and MATLAB).
        snr_db: S assumed SNRs in dB, nsr = 10^(-snr_db / 10). Default: the paper's 9, 13, ..., 65.
        nsr: S noise-to-signal ratios directly (instead of snr_db); may require grad.

    Returns:
        [B, S, C, H, W] in y's dtype. Differentiable with respect to y, psf and nsr (or snr_db).

    >>> y, psf = torch.rand(2, 3, 16, 16), torch.full((5, 5), 1 / 25)
    >>> wiener_bank(y, psf).shape, wiener_bank(y, psf, snr_db=[20.0, 30.0]).shape
    (torch.Size([2, 15, 3, 16, 16]), torch.Size([2, 2, 3, 16, 16]))
    """
    check_float("y", y)
    check_float("psf", psf)
    if y.dim() != 4:
        raise ValueError(f"y must be [B, C, H, W] (4-D), got shape {tuple(y.shape)}")
    check_device("y", y)
    check_same_device(y=y, psf=psf)
    psf4 = _psf_as_4d(psf, y)
    checks = ValueChecks()
    checks.finite("y", y)
    _check_psf_values(psf4, checks)
    nsr_values = _nsr_tensor(snr_db, nsr, y, checks)
    checks.run()
    dtype = compute_dtype(y)
    out = torch.ops.pydeblur.wiener_bank(y.to(dtype), psf4.to(dtype), nsr_values.to(dtype))
    return out.to(y.dtype)


@torch.library.register_fake("pydeblur::wiener_bank")
def _wiener_bank_fake(y, psf, nsr):
    B, C, H, W = y.shape
    return y.new_empty((B, nsr.shape[0], C, H, W))


@torch.library.register_fake("pydeblur::_wiener_bank_backward")
def _wiener_bank_backward_fake(grad, y, psf, nsr, output_mask):
    def maybe(needed, like):
        return like.new_empty(like.shape) if needed else like.new_empty((0,))

    return maybe(output_mask[0], y), maybe(output_mask[1], psf), maybe(output_mask[2], nsr)


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _backward(ctx, grad):
    y, psf, nsr = ctx.saved_tensors
    mask = list(ctx.needs_input_grad[:3])
    grads = torch.ops.pydeblur._wiener_bank_backward(grad.contiguous(), y, psf, nsr, mask)
    return tuple(g if needed else None for g, needed in zip(grads, mask, strict=True))


torch.library.register_autograd("pydeblur::wiener_bank", _backward, setup_context=_setup_context)
