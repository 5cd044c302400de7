"""The picture of what `robust` fixes: grey photos (one noise in the three copies) deblurred by
`default` and `robust`, side by side with the sharp image and the blurred input.

    PYTHONPATH=. python benchmarks/results/2026-12-03-robust-model/grey_figure.py [OUT]

Kodak items 0 and 5 of `training.eval_sets.kodak_items` (noise-free Levin-kernel blur), turned grey
(Rec. 601 luma), then one Gaussian draw of sigma 0.02 (seeded) added; each model runs on the grey
image in three channels, its output averaged back to grey, PSNR against the sharp luma. OUT defaults
to docs/figures/robust-grey.jpg.
"""

import sys

import torch

from pydeblur.datasets import LUMA
from training.eval_methods import model_method, score_images
from training.eval_sets import kodak_items
from training.figures import comparison_figure

SIGMA = 0.02
ITEMS = (0, 5)


def main(out: str = "docs/figures/robust-grey.jpg") -> None:
    methods = [model_method(name, torch.device("cpu"), 1)[0] for name in ("default", "robust")]
    generator = torch.Generator().manual_seed(0)
    weights = torch.tensor(LUMA).view(3, 1, 1)
    items, kept, psnrs = [], {}, {}
    every = kodak_items(limit=max(ITEMS) + 1, sigmas=(0.0,))
    for index in ITEMS:
        item = every[index]
        sharp = (item["sharp"] * weights).sum(0, keepdim=True)
        blurred = (item["blurred"] * weights).sum(0, keepdim=True)
        blurred = blurred + torch.randn(blurred.shape, generator=generator) * SIGMA
        name = item["name"].rsplit("_sigma", 1)[0]  # the noise is ours, not the item's
        items.append({"sharp": sharp, "name": name, "group": f"grey, sigma {SIGMA}"})
        outputs = {"Blurred input": blurred}
        for (
            method
        ) in methods:  # a grey input runs in three channels, averaged back (the evaluation's way)
            with torch.no_grad():
                output = method.run(blurred[None], item["psf"][None], sharp[None])
            outputs[method.name] = output[0].clamp(0, 1)
        for method, image in outputs.items():
            kept.setdefault(method, {})[len(items) - 1] = image
            psnr = float(score_images(image[None], sharp[None], False)["psnr"][0])
            psnrs.setdefault(method, []).append(psnr)
    block = {
        "title": "Grey photos, one noise in all three channels: the default model keeps it as detail",
        "methods": {m: {"per_image": {"psnr": values}} for m, values in psnrs.items()},
    }
    print(comparison_figure(out, items, list(range(len(items))), kept, block))
    for method, values in psnrs.items():
        print(method, " ".join(f"{v:.2f}" for v in values))


if __name__ == "__main__":
    main(*sys.argv[1:])
