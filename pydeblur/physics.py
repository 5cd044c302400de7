"""The blur model the solvers share: y = k * x, circular convolution by a PSF, in the Fourier domain.

A PSF [kh, kw] has its centre at element (kh // 2, kw // 2) and blurs by convolution, not correlation
(docs/design.md); `psf2otf` moves that centre to the frequency origin as MATLAB's psf2otf does, so
deconvolving gives the image back with no shift or flip. Everything here is periodic (circular):
callers that work on real photos pad them first (`pydeblur.boundary.pad_periodic`) and crop after.

- `psf2otf`: the optical transfer function K, full [..., H, W] or, for real images, the half
  spectrum [..., H, W // 2 + 1] of the rfft2 layout (the rest is its Hermitian mirror).
- `circular_convolve` (the forward model) and `circular_convolve_adjoint` (its adjoint, correlation).
- `wiener_deconvolve`: F^-1[conj(K) Y / (|K|^2 + nsr)], by the `pydeblur.ops.wiener_bank` operator
  (which computes its own OTF in C++/CUDA).
- `data_term_prox`: the closed form of min_x ||k * x - y||^2 + lam ||x - x0||^2.
- `data_where_trusted`: the data where they hold, the blurred estimate elsewhere (where the data
  term then pulls nowhere: outside the image, clipped highlights).
"""

import torch


def psf2otf(psf: torch.Tensor, shape: tuple[int, int], half_spectrum: bool = False) -> torch.Tensor:
    """MATLAB's psf2otf: the 2-D FFT of psf [..., kh, kw] zero-padded to shape (H, W), with the PSF
    centre element (kh // 2, kw // 2) moved to the origin. Returns complex [..., H, W], or with
    half_spectrum its first W // 2 + 1 columns [..., H, W // 2 + 1] (torch.fft.rfft2's layout).

    >>> delta = torch.zeros(3, 3, dtype=torch.float64)
    >>> delta[1, 1] = 1.0  # the centre element: the identity blur
    >>> psf2otf(delta, (4, 6), half_spectrum=True)
    tensor([[1.+0.j, 1.+0.j, 1.+0.j, 1.+0.j],
            [1.+0.j, 1.+0.j, 1.+0.j, 1.+0.j],
            [1.+0.j, 1.+0.j, 1.+0.j, 1.+0.j],
            [1.+0.j, 1.+0.j, 1.+0.j, 1.+0.j]], dtype=torch.complex128)
    """
    H, W = shape
    kh, kw = psf.shape[-2:]
    if kh > H or kw > W:
        raise ValueError(f"psf ({kh}x{kw}) is larger than shape ({H}x{W})")
    padded = psf.new_zeros((*psf.shape[:-2], H, W))
    padded[..., :kh, :kw] = psf
    otf = torch.fft.fft2(torch.roll(padded, shifts=(-(kh // 2), -(kw // 2)), dims=(-2, -1)))
    return otf[..., : W // 2 + 1] if half_spectrum else otf


def circular_convolve(x: torch.Tensor, otf: torch.Tensor) -> torch.Tensor:
    """k * x with periodic boundaries: x [..., H, W] real, otf the half spectrum
    [..., H, W // 2 + 1] (`psf2otf(psf, (H, W), half_spectrum=True)`, broadcast) -> [..., H, W].

    >>> x = torch.rand(1, 1, 4, 4, dtype=torch.float64)
    >>> shift = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    >>> torch.allclose(circular_convolve(x, psf2otf(shift, (4, 4), True)), x.roll(1, dims=-1))
    True
    """
    return torch.fft.irfft2(torch.fft.rfft2(x) * otf, s=x.shape[-2:])


def circular_convolve_adjoint(x: torch.Tensor, otf: torch.Tensor) -> torch.Tensor:
    """The adjoint of `circular_convolve` (correlation with k): x [..., H, W] real, otf the half
    spectrum [..., H, W // 2 + 1] -> [..., H, W]; <k * a, b> = <a, adjoint(b)>.

    >>> a, b = torch.rand(2, 1, 1, 6, 6, dtype=torch.float64)
    >>> otf = psf2otf(torch.rand(3, 3, dtype=torch.float64), (6, 6), half_spectrum=True)
    >>> bool(torch.isclose((circular_convolve(a, otf) * b).sum(),
    ...                    (a * circular_convolve_adjoint(b, otf)).sum()))
    True
    """
    return torch.fft.irfft2(torch.fft.rfft2(x) * otf.conj(), s=x.shape[-2:])


def wiener_deconvolve(
    y: torch.Tensor, psf: torch.Tensor, nsr: torch.Tensor | float
) -> torch.Tensor:
    """Wiener deconvolution of y [B, C, H, W] by psf ([kh, kw], [B, 1, kh, kw] or [B, C, kh, kw]) at
    one nsr, or a bank: nsr a float -> [B, C, H, W]; nsr a 1-D tensor of S values ->
    [B, S, C, H, W]. Circular; runs the `pydeblur.ops.wiener_bank` operator (its checks apply).

    >>> psf = torch.full((1, 1, 3, 3), 1 / 9)
    >>> y = torch.rand(2, 3, 16, 16)
    >>> wiener_deconvolve(y, psf, 0.01).shape, wiener_deconvolve(y, psf, torch.tensor([0.1, 0.01])).shape
    (torch.Size([2, 3, 16, 16]), torch.Size([2, 2, 3, 16, 16]))
    """
    from pydeblur.ops import wiener_bank

    if isinstance(nsr, torch.Tensor):
        return wiener_bank(y, psf, nsr=nsr.to(device=y.device, dtype=y.dtype))
    if not nsr > 0:
        raise ValueError(f"nsr must be positive, got {nsr}")
    return wiener_bank(y, psf, nsr=torch.tensor([float(nsr)], dtype=y.dtype, device=y.device))[:, 0]


def data_term_prox(
    x0: torch.Tensor, y: torch.Tensor, otf: torch.Tensor, lam: torch.Tensor | float
) -> torch.Tensor:
    """argmin_x ||k * x - y||^2 + lam ||x - x0||^2 (circular), in closed form:
    X = (conj(K) Y + lam X0) / (|K|^2 + lam).

    x0, y: [B, C, H, W] real; otf: the half spectrum [B or 1, 1 or C, H, W // 2 + 1] (`psf2otf(...,
    half_spectrum=True)`); lam: positive, a float or [B, 1, 1, 1]. Returns [B, C, H, W] (computed in
    the inputs' dtype: float64 is advised, the division by |K|^2 + lam reaches ~1e-6 at low noise);
    differentiable. A small lam trusts the data, a large one keeps x0; lam = nsr and x0 = 0 is the
    Wiener filter.

    >>> y = torch.rand(1, 3, 8, 8, dtype=torch.float64)
    >>> otf = psf2otf(torch.full((3, 3), 1 / 9, dtype=torch.float64), (8, 8), half_spectrum=True)
    >>> torch.allclose(data_term_prox(y, y, otf, 1e12), y)
    True
    """
    spectrum = otf.conj() * torch.fft.rfft2(y)
    spectrum += lam * torch.fft.rfft2(x0)
    spectrum /= otf.abs() ** 2 + lam
    return torch.fft.irfft2(spectrum, s=y.shape[-2:])


def data_where_trusted(
    y: torch.Tensor, x: torch.Tensor, otf: torch.Tensor, trusted: torch.Tensor
) -> torch.Tensor:
    """y where trusted > 0, k * x elsewhere: y, x [B, C, H, W] real, otf as `circular_convolve`'s,
    trusted [B or 1, C or 1, H, W] -> [B, C, H, W]. Fed to `data_term_prox` as its y, the data term
    is zero at the untrusted pixels for x, so there x is left to the prior (FDN's boundary
    adjustment when trusted is 0 outside the image).

    >>> x = torch.rand(1, 1, 8, 8, dtype=torch.float64)
    >>> otf = psf2otf(torch.full((3, 3), 1 / 9, dtype=torch.float64), (8, 8), half_spectrum=True)
    >>> torch.equal(data_where_trusted(torch.zeros_like(x), x, otf, torch.zeros_like(x)),
    ...             circular_convolve(x, otf))
    True
    """
    return torch.where(trusted > 0, y, circular_convolve(x, otf))
