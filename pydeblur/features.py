"""The feature step shared by training and inference: the blurred image stacked with its Wiener bank.

blurred [B, 3, H, W], psf [B, 1, kh, kw] -> features [B, 3 + 3 S, H, W]: channels 0..2 are the blurred
image, channels 3 + 3 s .. 5 + 3 s the Wiener deconvolution at the s-th noise-to-signal ratio. The
image is padded with `pydeblur.boundary.pad_periodic` before the (circular) Wiener bank and cropped
after, so that real, non-periodic photos do not ring at their borders. The noise-to-signal ratios
come from `pydeblur.noise.snr_to_nsr` (the paper's SNRs: `pydeblur.noise.PAPER_SNR_DB`).
"""

import torch

from pydeblur import ops
from pydeblur.boundary import crop, pad_periodic


def wiener_features(
    blurred: torch.Tensor,
    psf: torch.Tensor,
    nsr: torch.Tensor,
    margin: int | None = None,
) -> torch.Tensor:
    """Stack blurred [B, 3, H, W] with its Wiener bank for psf [B, 1, kh, kw] at nsr [S].

    Returns [B, 3 + 3 S, H, W] in blurred's dtype. margin: the boundary padding on each side (default:
    the PSF's larger side). Gradients flow to nsr (learnable SNRs) and to blurred.

    >>> nsr = torch.tensor([0.1, 0.01], dtype=torch.float64)
    >>> wiener_features(torch.rand(2, 3, 32, 32), torch.full((2, 1, 5, 5), 1 / 25), nsr).shape
    torch.Size([2, 9, 32, 32])
    """
    if blurred.dim() != 4:
        raise ValueError(f"blurred must be [B, C, H, W], got shape {tuple(blurred.shape)}")
    if psf.dim() != 4 or psf.shape[0] != blurred.shape[0]:
        raise ValueError(
            f"psf must be [B, 1, kh, kw] with B = {blurred.shape[0]}, got shape {tuple(psf.shape)}"
        )
    height, width = blurred.shape[-2:]
    if psf.shape[-2] > height or psf.shape[-1] > width:
        raise ValueError(f"psf {tuple(psf.shape[-2:])} is larger than the image {height}x{width}")
    dtype = blurred.dtype
    work = torch.float64 if dtype == torch.float64 else torch.float32
    canvas, padding = pad_periodic(blurred.to(work), tuple(psf.shape[-2:]), margin)
    bank = ops.wiener_bank(canvas, psf.to(work), nsr=nsr.to(device=blurred.device, dtype=work))
    bank = crop(bank, padding)  # [B, S, C, H, W]
    stacked = torch.cat([blurred.to(work).unsqueeze(1), bank], dim=1)
    return stacked.flatten(1, 2).to(dtype)


def feature_channels(num_snr: int, image_channels: int = 3) -> int:
    """Channels of `wiener_features`: the image and one deconvolution per SNR.

    >>> feature_channels(15)
    48
    """
    return image_channels * (1 + num_snr)
