"""Choose a trained model's data-consistency strength on the validation split, never on a test set.

    python -m training.tune_consistency --model default

Scores the model's output, without and with `pydeblur.consistency.data_consistency` at each strength of
the grid, on the val photos of `split_photos(seed)` at two noise levels: the paper's (the protocol of
training's validation) and a low-noise range (real camera shakes such as Levin's are nearly clean).
Prints a Markdown table; the chosen strength is the one with the best mean of the two, which
`--write` stores in a copy of the weights (config `data_consistency`).
"""

import argparse
import dataclasses
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from pydeblur import datasets
from pydeblur.consistency import data_consistency
from pydeblur.metrics import psnr
from pydeblur.model import DeblurNet
from pydeblur.weights_io import load_model, read_card, save_weights

DEFAULT_GRID = (5e3, 1e4, 2e4, 3e4, 5e4)
NOISE_LEVELS = {
    "paper noise (λ 2048, σ 0.05)": {},
    "low noise (λ 16384-524288, σ 0-2)": {"photons": (16384.0, 524288.0), "gauss": (0.0, 2.0)},
}


def validation_psnr(
    model: DeblurNet,
    photos: list[str],
    crops: int,
    grid: list[float],
    noise: dict,
    batch: int = 4,
    adjust_boundary: bool = False,
) -> torch.Tensor:
    """Mean PSNR [1 + len(grid)] of the clipped output: without the step, then at each strength
    (with FDN's boundary adjustment when `adjust_boundary`)."""
    data = datasets.BlurredCrops(photos, crops, crop_size=256, seed=1, **noise)
    sums = torch.zeros(1 + len(grid), dtype=torch.float64)
    for start in tqdm(range(0, len(data), batch), desc="  batches", leave=False):
        items = [data[i] for i in range(start, min(len(data), start + batch))]
        blurred, psf, sharp = (
            torch.stack([it[k] for it in items]) for k in ("blurred", "psf", "sharp")
        )
        with torch.no_grad():
            estimate = model.network(blurred, psf)  # the network alone, whatever its strength
            outputs = [estimate] + [
                data_consistency(estimate, blurred, psf, c, adjust_boundary=adjust_boundary)
                for c in grid
            ]
        for i, out in enumerate(outputs):
            sums[i] += psnr(out.clamp(0, 1), sharp).sum()
    return sums / len(data)


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", default="default", help="a shipped model name or .safetensors file"
    )
    parser.add_argument("--data", default="../shared/data/photos", help="the photo folder")
    parser.add_argument(
        "--split-seed", type=int, default=0, help="seed of split_photos (training's)"
    )
    parser.add_argument("--crops", type=int, default=8, help="crops per val photo (x 4 exposures)")
    parser.add_argument("--grid", default=",".join(f"{c:g}" for c in DEFAULT_GRID))
    parser.add_argument("--write", type=Path, help="save the weights with the chosen strength here")
    parser.add_argument(
        "--adjust-boundary",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the step with FDN's boundary adjustment (ModelConfig.boundary_adjustment; default: "
        "the model's own), searched and written so",
    )
    args = parser.parse_args(argv)
    grid = [float(v) for v in args.grid.split(",")]
    if not grid or any(not c > 0 for c in grid):
        parser.error(f"--grid must list positive strengths, got {args.grid}")
    torch.manual_seed(0)
    model = load_model(args.model).eval()
    adjust = (
        model.config.boundary_adjustment if args.adjust_boundary is None else args.adjust_boundary
    )
    photos = datasets.split_photos(args.data, seed=args.split_seed)["val"]
    scores = {}
    for label, noise in NOISE_LEVELS.items():
        print(
            f"{label}: {len(photos)} val photos x {args.crops} crops x 4 exposures", file=sys.stderr
        )
        scores[label] = validation_psnr(
            model, photos, args.crops, grid, noise, adjust_boundary=adjust
        )
    mean = torch.stack(list(scores.values())).mean(0)
    print("| strength | " + " | ".join(scores) + " | mean |")
    print("|---|" + "---|" * (len(scores) + 1))
    for i, strength in enumerate([0.0, *grid]):
        row = [f"{float(s[i]):.3f}" for s in scores.values()] + [f"{float(mean[i]):.3f}"]
        print(f"| {'off' if i == 0 else f'{strength:g}'} | " + " | ".join(row) + " |")
    chosen = [0.0, *grid][int(mean.argmax())]
    print(f"\nchosen: {'off' if chosen == 0 else f'{chosen:g}'}")
    if args.write:
        card = {k: v for k, v in read_card(args.model).items() if k not in ("format", "config")}
        card["data_consistency"] = {
            "chosen_on": f"the val split of split_photos(seed={args.split_seed}), both noise levels",
            "boundary_adjustment": adjust,
            "command": "python -m training.tune_consistency " + " ".join(argv or sys.argv[1:]),
            "mean_psnr_db": {
                f"{c:g}": round(float(m), 3) for c, m in zip([0.0, *grid], mean, strict=True)
            },
        }
        config = dataclasses.replace(
            model.config, data_consistency=chosen, boundary_adjustment=adjust
        )
        tuned = DeblurNet(config)
        tuned.load_state_dict(model.state_dict())
        save_weights(tuned, args.write, card)
        print(f"wrote {args.write}")
    return chosen


if __name__ == "__main__":
    main()
