"""Deblur a real photo: any array kind, dtype and size, on CPU or CUDA.

`Deblurrer(model, device, tile, overlap)` resolves the device and the model once and checks the tiling;
calling it with `(image, psf)` validates the kernel once, converts the image to float RGB in [0, 1], runs
the model's network over tiles whose size fits the free memory (`pydeblur.tiling`), applies the model's
last step (`DeblurNet.refine`) once on the whole image, and gives the result back in the caller's kind,
dtype, range and layout. `deblur(image, psf)` is the same in one call.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import torch

from pydeblur import tiling
from pydeblur.image_batch import from_batch, to_batch


def _as_psf(psf, image_shape: tuple[int, int]) -> torch.Tensor:
    """A kernel as [kh, kw] float32 summing to 1, from an array, a tensor, a kernel file or a spec
    ("motion:15,30": `kernel_io.load_psf`), validated by `pydeblur.kernel_io.check_psf` (2-D,
    finite, non-negative, positive sum, no larger than the image)."""
    from pydeblur.kernel_io import check_psf, load_psf

    if isinstance(psf, (str, os.PathLike)):
        psf = load_psf(psf)
    elif isinstance(psf, torch.Tensor):
        psf = psf.detach().cpu().double().numpy()
    elif not isinstance(psf, np.ndarray):
        raise TypeError(
            "psf must be a 2-D NumPy array, a torch tensor, a kernel file or spec, got "
            f"{type(psf).__name__}"
        )
    if psf.ndim == 4 and psf.shape[:2] == (1, 1):
        psf = psf[0, 0]
    return torch.from_numpy(check_psf(psf, "psf", image_shape))


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """ "auto": the first CUDA GPU when pydeblur has CUDA kernels and a GPU is present, else the CPU.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    from pydeblur.ops._library import HAS_CUDA_KERNELS

    if device == "auto" or device is None:
        use_cuda = HAS_CUDA_KERNELS and torch.cuda.is_available()
        return torch.device("cuda" if use_cuda else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(
            f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}"
        ) from error
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {str(device)!r} was asked for but no CUDA GPU is available")
        if not HAS_CUDA_KERNELS:
            raise RuntimeError(
                f"device {str(device)!r} was asked for but pydeblur was built without its CUDA kernels"
            )
    elif device.type != "cpu":
        raise ValueError(f"device must be 'auto', 'cpu' or a CUDA device, got {str(device)!r}")
    return device


@functools.lru_cache(maxsize=4)
def _load_cached(name: str, stamp: float | None, device: torch.device) -> torch.nn.Module:
    from pydeblur.weights_io import load_model

    model = load_model(name, device).eval()
    if device.type == "cpu":
        # oneDNN's convolutions run ~25 % faster on NHWC weights here (1.03 s against 1.33 s for a
        # 542x542 forward on 2 cores; outputs equal to 3e-6), whatever the input's layout
        model = model.to(memory_format=torch.channels_last)
    return model


def resolve_model(
    model: str | os.PathLike | torch.nn.Module, device: torch.device
) -> torch.nn.Module:
    """A network on `device`: a module as given (moved there if it lives elsewhere), or a shipped
    name or weights file loaded by `pydeblur.weights_io.load_model` (in eval mode).

    Loaded models are cached per (name or path, file time, device), so repeated calls do not reload.

    >>> type(resolve_model("default", torch.device("cpu"))).__name__
    'DeblurNet'
    """
    if isinstance(model, torch.nn.Module):
        return model if _module_device(model) == device else model.to(device)
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(
            f"model must be a name, a weights file or a torch.nn.Module, got {type(model).__name__}"
        )
    path = Path(model)
    stamp = path.stat().st_mtime if path.is_file() else None
    try:
        return _load_cached(str(model), stamp, device)
    except (OSError, ValueError, TypeError):
        raise
    except Exception as error:  # the safetensors reader's own errors name no file
        raise ValueError(f"{model}: not a pydeblur weights file ({error})") from error


def _check_number(name: str, value, accept, meaning: str) -> None:
    """A one-line ValueError unless `value` is a real number (not a bool) that `accept`s."""
    if not (
        isinstance(value, (int, float, np.floating))
        and not isinstance(value, bool)
        and accept(value)
    ):
        raise ValueError(f"{name} must be {meaning}, got {value!r}")


def _check_settings(noise_sigma, strength, clip_level) -> None:
    if noise_sigma is not None:
        _check_number(
            "noise_sigma",
            noise_sigma,
            lambda v: 0 <= v <= 1,
            "None (estimate it) or a number in [0, 1]",
        )
    _check_number("strength", strength, lambda v: 0 < v < float("inf"), "a positive number")
    if clip_level is not None:
        _check_number("clip_level", clip_level, lambda v: 0 < v <= 1, "None or a number in (0, 1]")


def unclipped(rgb: torch.Tensor, clip_level: float) -> torch.Tensor:
    """Where the data hold: rgb [B, C, H, W] in [0, 1] -> [B, C, H, W] float, 0 at values >= clip_level
    and their 8 neighbours (channel by channel), 1 elsewhere.

    >>> image = torch.zeros(1, 1, 5, 5)
    >>> image[0, 0, 2, 2] = 1.0
    >>> unclipped(image, 0.98)[0, 0].int()
    tensor([[1, 1, 1, 1, 1],
            [1, 0, 0, 0, 1],
            [1, 0, 0, 0, 1],
            [1, 0, 0, 0, 1],
            [1, 1, 1, 1, 1]], dtype=torch.int32)
    """
    clipped = (rgb >= clip_level).float()
    return 1 - torch.nn.functional.max_pool2d(clipped, 3, stride=1, padding=1)


def reblur(image: torch.Tensor, psf: torch.Tensor) -> torch.Tensor:
    """image [1, C, H, W] blurred by psf [1, 1, kh, kw], same frame: circular on the canvas of
    `pydeblur.boundary.pad_periodic`, so the borders see a smooth extension. -> [1, C, H, W] float32.

    >>> flat = torch.full((1, 3, 20, 20), 0.5)
    >>> torch.allclose(reblur(flat, torch.full((1, 1, 5, 5), 1 / 25)), flat)
    True
    """
    from pydeblur.boundary import crop, pad_periodic
    from pydeblur.physics import circular_convolve, psf2otf

    canvas, padding = pad_periodic(image.float(), tuple(psf.shape[-2:]))
    otf = psf2otf(psf.double(), canvas.shape[-2:], half_spectrum=True)
    return crop(circular_convolve(canvas.double(), otf), padding).float()


def _module_device(model: torch.nn.Module) -> torch.device:
    """Where a module's parameters (or buffers) live; the CPU for a module with neither."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


PRECISIONS = ("float32", "bfloat16")


def bfloat16_supported(device: torch.device) -> bool:
    """Whether `device` runs bfloat16 convolutions natively (a CUDA GPU that supports bfloat16, or a
    CPU whose oneDNN has bfloat16 instructions: AVX512-BF16 or AMX); elsewhere they are emulated
    and slower than float32.

    >>> isinstance(bfloat16_supported(torch.device("cpu")), bool)
    True
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(check()) if check is not None else False


def _check_precision(precision, device: torch.device) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "bfloat16" and not bfloat16_supported(device):
        raise ValueError(
            f"precision 'bfloat16' needs native bfloat16 convolutions, which {device} lacks "
            "(AVX512-BF16 or AMX on a CPU); use 'float32'"
        )


def _check_sizes(tile, overlap, max_memory) -> None:
    for name, value, least in (
        ("tile", tile, 1),
        ("overlap", overlap, 0),
        ("max_memory", max_memory, 1),
    ):
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or value < least
        ):
            raise ValueError(f"{name} must be an integer >= {least} or None, got {value!r}")


class Deblurrer:
    """A model on a device with a tiling policy, to deblur any number of images with their kernels.

    Args:
        model: "default" (the shipped weights), another shipped name, a weights file (a
            `DeblurNet`'s, or an `HQSNet`'s from `pydeblur.hqs_io`: every tile solved at the whole
            image's noise level and `strength`), or a module with forward(blurred [B, 3, H, W],
            psf [B, 1, kh, kw]) -> [B, 3, H, W] (run in eval mode and handed back in its own mode).
        device: "auto" (CUDA when pydeblur has CUDA kernels and a GPU is present; for a module: where
            it lives), "cpu", "cuda:N" (a module living elsewhere is moved there).
        tile: tile side in pixels; None picks the largest that fits the free memory (a whole image
            that fits is one tile).
        overlap: pixels shared by neighbouring tiles; None derives it from the kernel size and the
            network's receptive field.
        max_memory: bytes of working memory to size tiles by (with tile=None).
        precision: "float32", or "bfloat16" (the network's convolutions in bfloat16 by autocast, on
            devices where `bfloat16_supported`; the Wiener features, the mixing of the network's
            head and the data steps stay float32/float64); measured on one 542x542 crop with AMX:
            0.6-0.7 of float32's time, within 0.003 of its result (docs/deblur.md; `pydeblur ui`'s
            preview uses it).

    >>> import numpy as np
    >>> deblurrer = Deblurrer(device="cpu")
    >>> blurred = np.full((48, 64, 3), 0.5, np.float32)
    >>> deblurrer(blurred, np.ones((5, 5))).shape
    (48, 64, 3)
    """

    def __init__(
        self,
        model: str | os.PathLike | torch.nn.Module = "default",
        device: str | torch.device = "auto",
        tile: int | None = None,
        overlap: int | None = None,
        max_memory: int | None = None,
        precision: str = "float32",
    ):
        from pydeblur.hqs import HQSNet
        from pydeblur.model import DeblurNet, conv_bytes_per_pixel, conv_radius

        _check_sizes(tile, overlap, max_memory)
        if tile is not None and overlap is not None:
            tiling.check_tile(tile, overlap)
        if isinstance(model, torch.nn.Module) and device in ("auto", None):
            self.device = _module_device(model)  # a module given runs where it lives
        else:
            self.device = resolve_device(device)
        _check_precision(precision, self.device)
        self.model = resolve_model(model, self.device)
        self.tile, self.overlap, self.max_memory = tile, overlap, max_memory
        self.precision = precision
        self._net = self.model if isinstance(self.model, DeblurNet) else None
        self._hqs = isinstance(self.model, HQSNet)
        if self._hqs and self.model.config.image_channels != 3:
            raise ValueError(
                f"model: an HQSNet of {self.model.config.image_channels} image channel(s); "
                "deblur runs models of 3 (grey images are deblurred as RGB)"
            )
        if self._net is not None or self._hqs:
            self._radius, self._bytes = self.model.receptive_radius(), self.model.bytes_per_pixel()
        else:
            self._radius, self._bytes = conv_radius(self.model), conv_bytes_per_pixel(self.model)

    def plan(self, psf_shape: tuple[int, int], image_shape: tuple[int, int] | None = None):
        """(tile, overlap) for a kernel of `psf_shape` and, when given, an image of `image_shape`;
        refuses a tile under twice the overlap when the image needs more than one tile."""
        overlap = self.overlap
        if overlap is None:
            overlap = tiling.default_overlap(self._radius, psf_shape)
        tile = self.tile
        if (
            tile is None
        ):  # the memory budget yields to the overlap: tiles of less are mostly overlap
            budget = self.max_memory or tiling.available_bytes(self.device)
            tile = max(tiling.auto_tile(self._bytes, psf_shape, budget), 2 * overlap)
        if image_shape is None or tile < max(image_shape):
            tiling.check_tile(tile, overlap)
        return tile, overlap

    def __call__(
        self,
        image,
        psf,
        noise_sigma: float | None = None,
        strength: float = 1.0,
        gamma: str = "linear",
        clip_level: float | None = None,
    ):
        """Deblur `image`, blurred by the known kernel `psf`.

        Args:
            image: NumPy HxW, HxWx1, HxWx2, HxWx3 or HxWx4 array, or torch [H, W], [C, H, W] or
                [B, C, H, W] tensor (C = 1, 2, 3 or 4: grey, grey+alpha, RGB, RGBA); uint8, uint16, or
                float with values in [0, 1]. Grey images are deblurred as RGB and averaged back; an
                alpha channel is passed through untouched.
            psf: the blur kernel, [kh, kw], non-negative (normalised to sum 1 here), centre at
                (kh // 2, kw // 2); an array, a tensor, or a kernel file (.npy/.png/.txt/.csv/.mat).
            noise_sigma: the noise standard deviation of `image` in [0, 1] units of its value range
                (uint8 noise of 2.55 levels is 0.01); None estimates it (`pydeblur.estimate_noise`).
                The model's data steps (unrolled stages or data consistency) weigh the data by it.
            strength: above 1 trusts the data more (sharper, noisier), below 1 less (smoother); it
                divides the data steps' regularisation. 1 is what the model was trained at.
            gamma: "linear" (the values are linear light, as given) or "srgb" (sRGB-encoded, as
                camera JPEGs and PNGs are: decoded to linear light before deblurring, where blur
                happens, and encoded again after; noise_sigma then refers to the linear values).
            clip_level: values at or above it (of the image as given, in [0, 1] units) are clipped
                highlights: they and their 1-pixel neighbourhood are left out of the data steps
                (channel by channel), and the network runs a second time on the data with them
                replaced by its first result blurred, so they do not ring. None: every pixel is data.

        Returns:
            The deblurred image in the kind, dtype, shape, value range and device of `image`.
        """
        from pydeblur import ops
        from pydeblur.colour import check_gamma, linear_to_srgb, srgb_to_linear

        _check_settings(noise_sigma, strength, clip_level)
        check_gamma(gamma)
        colour, alpha, form = to_batch(image)
        height, width = colour.shape[-2:]
        kernel = _as_psf(psf, (height, width))
        tile, overlap = self.plan(tuple(kernel.shape), (height, width))
        kernel = kernel[None, None].to(self.device)
        results = []
        was_training = self.model.training
        self.model.eval()
        try:
            # not inference_mode: its tensors could not enter the caller's autograd. The kernel and
            # the image were checked above: the operators need not read their values again.
            with torch.no_grad(), ops.skip_value_checks():
                for index in range(colour.shape[0]):
                    rgb = colour[index : index + 1].expand(1, 3, height, width)
                    trusted = None if clip_level is None else unclipped(rgb, clip_level)
                    if trusted is not None and bool(trusted.all()):
                        trusted = None  # nothing clipped: no mask, no second pass
                    if gamma == "srgb":
                        rgb = srgb_to_linear(rgb)
                    out = self._restore(rgb, kernel, tile, overlap, noise_sigma, strength, trusted)
                    results.append(linear_to_srgb(out) if gamma == "srgb" else out)
        finally:
            self.model.train(was_training)  # a module given mid-training is handed back as it was
        return from_batch(results[0] if len(results) == 1 else torch.cat(results), alpha, form)

    def _restore(
        self,
        rgb: torch.Tensor,
        psf: torch.Tensor,
        tile: int,
        overlap: int,
        noise_sigma: float | None = None,
        strength: float = 1.0,
        trusted: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """rgb [1, 3, H, W] (CPU) -> [1, 3, H, W] (CPU), `trusted` the mask of clipped highlights
        (None: none clipped): the network tile by tile, then the model's
        last steps on the whole image with the noise estimated once from all channels (unless
        given): the unrolled stages (their U-Nets tile by tile, the same tiles), or the data-consistency
        step one channel at a time (the float64 spectra of a 12-megapixel photo take about 1 GB per
        channel)."""
        net = self._net
        model = self.model if net is None else net.network
        bfloat16 = self.precision == "bfloat16"

        from pydeblur.model import noise_descriptor
        from pydeblur.noise import estimate_noise_sigma

        told = net is not None and net.conditioning is not None
        sigma = None  # the whole image's noise level, for the conditioning and the last steps
        if told or self._hqs or (net is not None and net.refines):
            if noise_sigma is None:
                sigma = estimate_noise_sigma(rgb)
            else:
                sigma = torch.tensor([float(noise_sigma)])
        # A network told the noise is told that of the whole image, the same in every tile.
        noise = {"noise": noise_descriptor(rgb, sigma).to(self.device)} if told else {}
        if self._hqs:  # its stages are the whole model: every tile solved at the image's noise
            noise = {"sigma": sigma.to(self.device), "strength": strength}

        def network(part: torch.Tensor) -> torch.Tensor:
            with torch.autocast(self.device.type, torch.bfloat16, enabled=bfloat16):
                return model(part.to(self.device), psf, **noise)

        out = tiling.run_tiled(network, rgb, tile, overlap)
        if trusted is not None:
            # Clipped highlights: the network runs again on the data with them replaced by its first
            # estimate blurred (what the sensor would have recorded without clipping, as far as it
            # knows), so its Wiener features do not ring around them either.
            refilled = torch.where(trusted > 0, rgb, reblur(out, psf.cpu()))
            out = tiling.run_tiled(network, refilled, tile, overlap)
        if net is None or not net.refines:
            return out
        sigma = sigma.to(self.device)
        if trusted is not None:
            trusted = trusted.to(self.device)
        if net.stages is not None:

            def tiled(function, inputs):
                return tiling.run_tiled(
                    lambda part: function(part.to(self.device)), inputs.cpu(), tile, overlap
                ).to(inputs.device)

            return net.refine(
                out.to(self.device), rgb.to(self.device), psf, sigma, strength, tiled, trusted
            ).cpu()
        channels = [
            net.refine(
                out[:, c : c + 1].to(self.device),
                rgb[:, c : c + 1].to(self.device),
                psf,
                sigma,
                strength,
                trusted=None if trusted is None else trusted[:, c : c + 1],
            ).cpu()
            for c in range(out.shape[1])
        ]
        return torch.cat(channels, dim=1)


def deblur(
    image,
    psf,
    model: str | os.PathLike | torch.nn.Module = "default",
    device: str | torch.device = "auto",
    tile: int | None = None,
    overlap: int | None = None,
    max_memory: int | None = None,
    *,
    noise_sigma: float | None = None,
    strength: float = 1.0,
    gamma: str = "linear",
    clip_level: float | None = None,
    precision: str = "float32",
):
    """Deblur `image`, blurred by the known kernel `psf`: `Deblurrer(model, device, tile, overlap,
    max_memory, precision)(image, psf, noise_sigma, strength, gamma, clip_level)` (see there for
    every argument). Same kind, dtype, shape, range and device back. To deblur several images, build
    one `Deblurrer` and call it for each.

    >>> import numpy as np
    >>> sharp = deblur(np.full((40, 40), 128, np.uint8), np.ones((3, 3)), device="cpu")
    >>> sharp.shape, sharp.dtype
    ((40, 40), dtype('uint8'))
    """
    deblurrer = Deblurrer(model, device, tile, overlap, max_memory, precision)
    return deblurrer(image, psf, noise_sigma, strength, gamma, clip_level)


def estimate_noise(image, gamma: str = "linear") -> float:
    """The noise standard deviation of `image` in [0, 1] units of its value range, estimated from the
    image itself (`pydeblur.noise.estimate_noise_sigma` over its colour channels): what `deblur` uses
    when `noise_sigma` is None, of the data it deblurs (with gamma "srgb": the linear light). Same
    image kinds as `deblur`; a batch gives its first image's.

    >>> import numpy as np
    >>> noisy = np.random.default_rng(0).normal(0.5, 0.02, (128, 128, 3))
    >>> round(estimate_noise(noisy.astype(np.float32)), 2)
    0.02
    """
    from pydeblur.colour import check_gamma, srgb_to_linear
    from pydeblur.noise import estimate_noise_sigma

    check_gamma(gamma)
    colour = to_batch(image)[0][:1]
    colour = colour.expand(1, 3, *colour.shape[-2:])
    return float(estimate_noise_sigma(srgb_to_linear(colour) if gamma == "srgb" else colour)[0])
