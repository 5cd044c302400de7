"""FDN (Kruse, Rother & Schmidt, ICCV 2017) inference, a PEER for our evaluation tables only.

Written from the description in /work/shared/data/peers/fdn/README.md and the authors' released Keras
weights (BSD 2-clause). Never a teacher, training data or shipped weights; see docs/fdn.md.

Shapes: images [B, 1, H, W] in [0, 1]; PSFs [B, 1, kh, kw], odd sizes (even ones are padded to odd with
a zero row/column at the bottom/right, which keeps the centre at (kh//2, kw//2)), sum 1, applied by true
convolution; sigma [B] on the 0..1 scale. A stage t maps x_{t-1} to x_t on the padded canvas
[B, 1, H + kh - 1, W + kw - 1]:

    x_t = F^-1[(lam conj(K) F(y_t) + F(cnn(x_{t-1}))) / (lam |K|^2 + sum_i |F_i|^2)]

>>> import torch
>>> image = torch.full((1, 1, 12, 12), 0.5)
>>> bool(torch.allclose(edgetaper(image, torch.full((1, 1, 3, 3), 1 / 9)), image))
True
"""

import math
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pydeblur.physics import circular_convolve, psf2otf

WEIGHTS_FILE = "stages_01-10_finetuned.hdf5"
N_STAGES = 10
CNN_PAD = 20
TAPER_PASSES = 3
SHAPES = {  # Keras layouts: Conv2D kernel [h, w, in, out], Dense kernel [in, out]
    **{f"conv{i}": ((3, 3, 32, 32), (32,)) for i in range(2, 6)},
    "conv1": ((3, 3, 1, 32), (32,)),
    "conv6": ((3, 3, 32, 1), (1,)),
    "dense1": ((1, 16), (16,)),
    "dense2": ((16, 16), (16,)),
    "dense3": ((16, 16), (16,)),
    "lambda": ((16, 1), (1,)),
}


def dct_basis(size: int = 5) -> torch.Tensor:
    """The 2-D orthonormal DCT-II basis without its constant element: [size^2, size^2 - 1] float64.

    Column u * size + v - 1 is c_u(m) c_v(n) flattened row-major over (m, n), with
    c_u(m) = a_u cos(pi (2m + 1) u / (2 size)), a_0 = sqrt(1/size), a_u = sqrt(2/size) (scipy's
    dct(eye, norm="ortho") layout); (u, v) = (0, 0) is dropped.

    >>> b = dct_basis()
    >>> tuple(b.shape), bool(torch.allclose(b.T @ b, torch.eye(24, dtype=b.dtype)))
    ((25, 24), True)
    """
    m = torch.arange(size, dtype=torch.float64)
    c = torch.cos(math.pi * (2 * m[:, None] + 1) * m[None, :] / (2 * size)) * math.sqrt(2 / size)
    c[:, 0] = math.sqrt(1 / size)  # c[m, u]
    return torch.einsum("mu,nv->mnuv", c, c).reshape(size * size, size * size)[:, 1:]


def circular_blur(image: torch.Tensor, psf: torch.Tensor) -> torch.Tensor:
    """True circular convolution of image [B, C, H, W] with psf [B, 1, kh, kw]: [B, C, H, W]."""
    return circular_convolve(image, psf2otf(psf, image.shape[-2:], half_spectrum=True))


def taper_weights(psf: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """MATLAB edgetaper's alpha for psf [B, 1, kh, kw] on an image of `size`: [B, 1, H, W] in [0, 1].

    Per axis: the PSF's projection p on it (summed over the other axis), its circular autocorrelation
    over n - 1 samples (n the image size), made cyclic by repeating its first sample (n samples),
    divided by its maximum (z[0]); alpha = outer(1 - z_rows, 1 - z_cols): 0 on the outermost rows and
    columns, 1 once a PSF's extent away from the edges.
    """
    weights = []
    for axis, n in ((-1, size[0]), (-2, size[1])):
        p = psf.sum(dim=axis).flatten(1)  # [B, k]: the projection onto the other axis
        z = torch.fft.irfft(torch.fft.rfft(p, n=n - 1).abs().square(), n=n - 1)
        z = torch.cat([z, z[:, :1]], dim=1)
        weights.append(1 - z / z.amax(dim=1, keepdim=True))
    return (weights[0][:, :, None] * weights[1][:, None, :])[:, None]


def edgetaper(image: torch.Tensor, psf: torch.Tensor, passes: int = 1) -> torch.Tensor:
    """MATLAB's edgetaper(I, PSF), repeated `passes` times: image [B, C, H, W] -> [B, C, H, W].

    J = alpha I + (1 - alpha) (PSF circularly convolved with I), alpha from `taper_weights`. (A convex
    blend of I and a non-negative unit-sum blur of it, so MATLAB's clamp to I's range changes nothing.)
    """
    kh, kw = psf.shape[-2:]
    if kh >= image.shape[-2] or kw >= image.shape[-1]:
        raise ValueError(
            f"edgetaper: a {kh}x{kw} PSF needs a larger image than {tuple(image.shape)}"
        )
    alpha = taper_weights(psf, image.shape[-2:]).to(image.dtype)
    for _ in range(passes):
        image = alpha * image + (1 - alpha) * circular_blur(image, psf)
    return image


def fourier_update(y, otf, regulariser, lam, adjustment):
    """The closed-form stage update on the canvas: x = F^-1[(lam conj(K) Y + A) / (lam |K|^2 + R)].

    y, adjustment [B, 1, h, w]; otf [B, 1, h, w//2+1]; regulariser R = sum_i |F_i|^2 [h, w//2+1];
    lam [B] -> [B, 1, h, w].
    """
    lam = lam.reshape(-1, 1, 1, 1)
    numerator = lam * otf.conj() * torch.fft.rfft2(y) + torch.fft.rfft2(adjustment)
    denominator = lam * otf.abs().square() + regulariser
    return torch.fft.irfft2(numerator / denominator, s=y.shape[-2:])


class Stage(nn.Module):
    """One FDN stage's learned parts: the lambda MLP, the adjustment CNN and the 24 filter weights."""

    def __init__(self):
        super().__init__()
        self.mlp = nn.ModuleList([nn.Linear(1, 16), nn.Linear(16, 16), nn.Linear(16, 16)])
        self.lam = nn.Linear(16, 1)
        self.convs = nn.ModuleList(
            [nn.Conv2d(1 if i == 0 else 32, 32, 3, padding=1) for i in range(5)]
        )
        self.convs.append(nn.Conv2d(32, 1, 3, padding=1))
        self.register_buffer("filter_weights", torch.zeros(24, 24))

    def weight(self, sigma255: torch.Tensor) -> torch.Tensor:
        """lambda = softplus(MLP(1 / sigma^2)): sigma255 [B] on the 0..255 scale -> [B]."""
        h = (1 / sigma255.square())[:, None]
        for layer in self.mlp:
            h = F.elu(layer(h))
        return F.softplus(self.lam(h))[:, 0]

    def adjustment(self, x: torch.Tensor) -> torch.Tensor:
        """The CNN: replicate-pad 20, 5 x (3x3 conv, ELU), 3x3 conv, crop 20: [B, 1, h, w] -> same."""
        h = F.pad(x, (CNN_PAD,) * 4, mode="replicate")
        for conv in self.convs[:-1]:
            h = F.elu(conv(h))
        return self.convs[-1](h)[..., CNN_PAD:-CNN_PAD, CNN_PAD:-CNN_PAD]

    def regulariser(self, size: tuple[int, int]) -> torch.Tensor:
        """sum_i |F(f_i)|^2 on a canvas of `size`: [h, w//2+1]. f_i = B w_i (w_i the i-th column),
        read into 5x5 column-major (i.e. transposed; row-major disagrees with the trained CNN's
        frequency response and costs 0.7 dB on Levin: docs/fdn.md)."""
        filters = (dct_basis().to(self.filter_weights) @ self.filter_weights).T.reshape(24, 5, 5)
        filters = filters.transpose(1, 2)
        return torch.fft.rfft2(filters, s=size).abs().square().sum(dim=0)


class FDN(nn.Module):
    """The 10-stage FDN; `forward(y [B, 1, H, W], psf [B, 1, kh, kw], sigma [B]) -> [B, 1, H, W]`."""

    def __init__(self, n_stages: int = N_STAGES):
        super().__init__()
        self.stages = nn.ModuleList([Stage() for _ in range(n_stages)])

    @torch.no_grad()
    def forward(self, y: torch.Tensor, psf: torch.Tensor, sigma) -> torch.Tensor:
        y, psf, sigma = _checked(y, psf, sigma, self.stages[0].filter_weights.dtype)
        (h, w), (kh, kw) = y.shape[-2:], psf.shape[-2:]
        ph, pw = kh // 2, kw // 2
        y_pad = edgetaper(F.pad(y, (pw, pw, ph, ph), mode="replicate"), psf, TAPER_PASSES)
        size = y_pad.shape[-2:]
        otf = psf2otf(psf, size, half_spectrum=True)
        mask = torch.zeros_like(y_pad)
        mask[..., ph : ph + h, pw : pw + w] = 1
        x = y_pad
        for t, stage in enumerate(self.stages):
            y_t = y_pad if t == 0 else mask * y_pad + (1 - mask) * circular_blur(x, psf)
            x = fourier_update(
                y_t, otf, stage.regulariser(size), stage.weight(sigma * 255), stage.adjustment(x)
            )
        return x[..., ph : ph + h, pw : pw + w]


def fdn_colour(model: FDN, y: torch.Tensor, psf: torch.Tensor, sigma) -> torch.Tensor:
    """Channel by channel: y [B, C, H, W], psf [B, 1, kh, kw], sigma [B] -> [B, C, H, W]."""
    if y.dim() != 4:
        raise ValueError(f"y must be [B, C, H, W], got {tuple(y.shape)}")
    b, c = y.shape[:2]
    sigma = torch.as_tensor(sigma, dtype=torch.float64).expand(b)
    out = model(
        y.reshape(b * c, 1, *y.shape[-2:]), psf.repeat_interleave(c, 0), sigma.repeat_interleave(c)
    )
    return out.reshape(y.shape)


def _checked(y, psf, sigma, dtype):
    """Validate and convert: even-sized PSFs padded to odd; sigma to a [B] tensor."""
    if y.dim() != 4 or y.shape[1] != 1:
        raise ValueError(
            f"y must be [B, 1, H, W] (use fdn_colour for colour), got {tuple(y.shape)}"
        )
    if psf.dim() != 4 or psf.shape[1] != 1 or psf.shape[0] != y.shape[0]:
        raise ValueError(
            f"psf must be [B, 1, kh, kw] with B = {y.shape[0]}, got {tuple(psf.shape)}"
        )
    kh, kw = psf.shape[-2:]
    psf = F.pad(psf, (0, 1 - kw % 2, 0, 1 - kh % 2))  # even -> odd: a zero row/column bottom/right
    if psf.shape[-2] >= y.shape[-2] or psf.shape[-1] >= y.shape[-1]:
        raise ValueError(f"a {kh}x{kw} PSF needs an image larger than {tuple(y.shape[-2:])}")
    sigma = torch.as_tensor(sigma, dtype=dtype).flatten()
    sigma = sigma.expand(y.shape[0]) if sigma.numel() == 1 else sigma
    if sigma.shape != (y.shape[0],) or not bool((sigma > 0).all()):
        raise ValueError(
            f"sigma must be positive, one per image ({y.shape[0]}), got {sigma.tolist()}"
        )
    return y.to(dtype), psf.to(dtype), sigma


def load_fdn(path, dtype: torch.dtype = torch.float32) -> FDN:
    """The authors' Keras HDF5 weights (a file, or a folder holding stages_01-10_finetuned.hdf5) as an
    FDN on the CPU in eval mode. Datasets are read by name (`model_{t+1}/conv1_{t}/kernel:0`, ...), never
    by the file's weight order; every shape is checked."""
    path = Path(path)
    path = path / WEIGHTS_FILE if path.is_dir() else path
    model = FDN()
    with h5py.File(path, "r") as file:
        for t, stage in enumerate(model.stages, start=1):
            group = f"model_{t + 1}"

            def read(name, shape, group=group):
                key = f"{group}/{name}"
                if key not in file:
                    raise ValueError(f"{path}: no dataset {key}")
                value = np.asarray(file[key][()], dtype=np.float64)
                if value.shape != shape:
                    raise ValueError(f"{path}: {key} has shape {value.shape}, expected {shape}")
                return torch.from_numpy(value)

            params = {}
            for layer, (kernel_shape, bias_shape) in SHAPES.items():
                kernel = read(f"{layer}_{t}/kernel:0", kernel_shape)
                bias = read(f"{layer}_{t}/bias:0", bias_shape)
                # Keras Conv2D [h, w, in, out] (cross-correlation, as torch) -> [out, in, h, w];
                # Keras Dense computes x @ kernel -> torch Linear's weight is kernel.T.
                params[layer] = (
                    kernel.permute(3, 2, 0, 1) if kernel.dim() == 4 else kernel.T,
                    bias,
                )
            modules = {f"conv{i}": stage.convs[i - 1] for i in range(1, 7)}
            modules.update(
                {f"dense{i}": stage.mlp[i - 1] for i in range(1, 4)}, **{"lambda": stage.lam}
            )
            for layer, (weight, bias) in params.items():
                modules[layer].weight.data.copy_(weight)
                modules[layer].bias.data.copy_(bias)
            stage.filter_weights.copy_(read(f"x_out_{t}/filter_weights:0", (24, 24)))
    return model.to(dtype).eval().requires_grad_(False)


def levin_benchmark(weights, folder, sigma255: float = 1.5, dtype=torch.float32) -> dict:
    """FDN on the 32 Levin captures, scored by `shifted_psnr`: {"psnr": {(image, kernel): dB},
    "seconds": FDN time per image}. Kernels and blurred images as in the folder's README."""
    import time

    from PIL import Image

    from training.levin_scoring import shifted_psnr

    def grey(path):
        return torch.from_numpy(np.asarray(Image.open(path).convert("L"), np.float64) / 255)[
            None, None
        ]

    folder, model, scores, seconds = Path(folder), load_fdn(weights, dtype), {}, 0.0
    for i in range(1, 5):
        sharp = grey(folder / "gt" / f"im{i}.png")
        for j in range(1, 9):
            psf = torch.from_numpy(np.load(folder / "kernels" / f"kernel{j}.npy"))[None, None]
            start = time.perf_counter()
            x = model(grey(folder / "blurred" / f"im{i}_kernel{j}.png"), psf, [sigma255 / 255])
            seconds += time.perf_counter() - start
            scores[i, j] = float(shifted_psnr(x.double().clamp(0, 1), sharp)[0])
    return {"psnr": scores, "seconds": seconds / len(scores)}


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="FDN (peer) on the Levin et al. benchmark")
    parser.add_argument("--weights", default="../shared/data/peers/fdn/sigma_1.0-3.0")
    parser.add_argument("--levin", default="../shared/data/levin")
    parser.add_argument("--sigma", type=float, default=1.5, help="noise sigma input, 0..255 scale")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result = levin_benchmark(args.weights, args.levin, args.sigma)
    psnr = result["psnr"]
    for j in range(1, 9):
        print(f"kernel {j}: {np.mean([psnr[i, j] for i in range(1, 5)]):.2f} dB")
    for i in range(1, 5):
        print(f"image {i}: {np.mean([psnr[i, j] for j in range(1, 9)]):.2f} dB")
    print(f"mean of 32: {np.mean(list(psnr.values())):.2f} dB; {result['seconds']:.2f} s per image")
