"""How a model copes with noise that is not independent across colour channels (grey images included).

    PYTHONPATH=. python benchmarks/results/2026-12-03-robust-model/channel_noise.py [MODEL ...]

The first 12 Kodak items of `training.eval_sets.kodak_items` (every photo with a Levin kernel, the
noise-free blur), then Gaussian noise of sigma 0.01 and 0.03 added four ways: independent per
channel (the Kodak set's own noise), the same draw in every channel, and the grey image (luma of
the blur) with one draw in its 3 copies or an independent draw per copy; PSNR of the output (grey
cases: the output's channel mean against the sharp luma). Last, the first 8 items of levin-synthetic
(grey, Levin's scoring). One generator, seeded 0, so every model sees the same noise.
"""

import sys

import torch

from pydeblur.datasets import LUMA
from training.eval_methods import model_method, score_images
from training.eval_sets import kodak_items, levin_synthetic_items


def measure(name: str) -> dict[str, float]:
    method = model_method(name, torch.device("cpu"), 1)[0]
    generator = torch.Generator().manual_seed(0)

    def restore(y: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """y [C, H, W] -> [C, H, W]; a grey y runs in three channels, averaged back (the evaluation's way)."""
        with torch.no_grad():
            return method.run(y[None], k[None], y[None])[0]

    def psnr(x: torch.Tensor, sharp: torch.Tensor, aligned: bool = False) -> float:
        return float(score_images(x[None], sharp[None], aligned)["psnr"][0])

    scores: dict[str, list[float]] = {}
    weights = torch.tensor(LUMA).view(3, 1, 1)
    for item in kodak_items(limit=12, sigmas=(0.0,)):
        sharp, blur, psf = item["sharp"], item["blurred"], item["psf"]
        sharp_grey, blur_grey = (
            (sharp * weights).sum(0, keepdim=True),
            (blur * weights).sum(0, keepdim=True),
        )
        for sigma in (0.01, 0.03):
            independent = torch.randn(blur.shape, generator=generator) * sigma
            same = (torch.randn(blur[:1].shape, generator=generator) * sigma).expand_as(blur)
            cases = {
                "colour, independent noise": psnr(restore(blur + independent, psf), sharp),
                "colour, the same noise in every channel": psnr(restore(blur + same, psf), sharp),
                "grey, one noise in its 3 copies": psnr(
                    restore(blur_grey + same[:1], psf), sharp_grey
                ),
                "grey, independent noise per copy": psnr(
                    restore(blur_grey + independent, psf).mean(0, keepdim=True), sharp_grey
                ),
            }
            for case, value in cases.items():
                scores.setdefault(f"Kodak sigma {sigma}, {case}", []).append(value)
    for item in levin_synthetic_items(limit=8):
        output = restore(item["blurred"], item["psf"])
        scores.setdefault("levin-synthetic, first 8 (grey)", []).append(
            psnr(output, item["sharp"], aligned=True)
        )
    return {case: sum(values) / len(values) for case, values in scores.items()}


def main(names: list[str]) -> None:
    results = {name: measure(name) for name in names}
    print("| case | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for case in results[names[0]]:
        print(f"| {case} | " + " | ".join(f"{results[n][case]:.2f}" for n in names) + " |")


if __name__ == "__main__":
    main(sys.argv[1:] or ["default"])
