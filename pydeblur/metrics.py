"""Image quality metrics on [B, C, H, W] tensors in [0, 1]."""

import torch


def psnr(x: torch.Tensor, reference: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image: [B, C, H, W] x2 -> [B].

    >>> reference = torch.full((2, 3, 4, 4), 0.5)
    >>> [round(v, 2) for v in psnr(reference + 0.125, reference).tolist()]  # 10 log10(64)
    [18.06, 18.06]
    """
    if x.shape != reference.shape:
        raise ValueError(f"shapes differ: {tuple(x.shape)} and {tuple(reference.shape)}")
    mse = (x.double() - reference.double()).pow(2).flatten(1).mean(1)
    return (10 * torch.log10(data_range**2 / mse)).to(x.dtype)
