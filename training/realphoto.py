"""The real-photo benchmark: photos blurred as a camera blurs them, deblurred with each feature on and off.

    python -m training.realphoto [--model default] [--photos N] [--out runs/realphoto]

Photos: the held-out test split of the training photos (`pydeblur.datasets.split_photos`, seed 0),
each downscaled by 2 (area) and cut into central SIZE x SIZE crops, decoded from sRGB to linear light.
Kernels: parametric families the model was not trained on (linear motion, a curved path, a defocus
disk, an elliptic Gaussian), one per photo in turn. Each crop is blurred in linear light (linear
convolution, valid region, so the borders are real), given Gaussian noise of sigma SIGMA (linear), and
then written as a camera would, in three conditions:

- `srgb-8bit`: sRGB-encoded, 8-bit;
- `highlights`: the linear light x1.6 before blurring, clipped at 1 after (blown highlights), then
  sRGB 8-bit; the reference is the sharp light x1.6 clipped at 1;
- `jpeg-q90`: `srgb-8bit` saved as JPEG at quality 90 and read back.

Every condition is deblurred with the features of `pydeblur.deblur` on and off: gamma ("linear" takes
the file's values as they are, "srgb" decodes them first), the clipped-highlight mask (clip_level
0.98 or none), and the noise level (estimated, or the true one given). PSNR (dB) on the sRGB-encoded
result against the sharp reference, SIZE - 2 x 16 pixels of the centre (the borders' 16 px left out).
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

SIZE = 256
SIGMA = 0.005  # noise of the linear light (about 1.3 levels of 255 at mid-grey once encoded)
BORDER = 16
HIGHLIGHT_GAIN = 1.6
CLIP_LEVEL = 0.98
CONDITIONS = ("srgb-8bit", "highlights", "jpeg-q90")
# (label, gamma, clip_level, noise given)
VARIANTS = (
    ("as given (gamma linear, no mask, noise estimated)", "linear", None, False),
    ("gamma srgb", "srgb", None, False),
    ("clip mask", "linear", CLIP_LEVEL, False),
    ("gamma srgb + clip mask", "srgb", CLIP_LEVEL, False),
    ("gamma srgb + clip mask + true noise", "srgb", CLIP_LEVEL, True),
)


def kernels() -> list[tuple[str, np.ndarray]]:
    """The benchmark's kernels, named by their spec."""
    from pydeblur import kernels as k

    return [
        ("motion:17,30", k.motion(17, 30)),
        ("path:(0,0)(6,2)(10,8)(9,14)", k.motion_path([(0, 0), (6, 2), (10, 8), (9, 14)])),
        ("defocus:5", k.defocus(5)),
        ("gaussian:2.5,1.2,45", k.gaussian(2.5, 1.2, 45)),
    ]


def sharp_crops(count: int, folder: str | Path | None = None) -> list[tuple[str, np.ndarray]]:
    """(name, linear-light sharp crop [SIZE + 80, SIZE + 80, 3] float64): two crops (left and right
    of the centre) of each of the first `count` test photos, with a margin of 40 px a side for the
    blur's valid region."""
    import cv2

    from pydeblur.colour import srgb_to_linear
    from pydeblur.datasets import split_photos
    from pydeblur.io import read_image
    from training.train_data import DEFAULT_PHOTOS

    photos = split_photos(folder or DEFAULT_PHOTOS, seed=0)["test"][:count]
    side = SIZE + 80
    crops = []
    for path in photos:
        image, _ = read_image(path)
        image = image[..., :3] if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
        half = cv2.resize(
            image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA
        )
        top = (half.shape[0] - side) // 2
        middle = half.shape[1] // 2
        places = [("left", middle - side), ("right", middle)] if middle >= side else []
        for part, left in places or [("centre", (half.shape[1] - side) // 2)]:
            crop = half[top : top + side, left : left + side]
            crops.append((f"{Path(path).stem}-{part}", srgb_to_linear(crop)))
    return crops


def degrade(linear: np.ndarray, kernel: np.ndarray, condition: str, seed: int):
    """(the camera's 8-bit sRGB image [SIZE, SIZE, 3] uint8, the sRGB reference [SIZE, SIZE, 3] in
    [0, 1]) of a linear sharp crop, per `condition` (module docstring)."""
    import cv2

    from pydeblur.colour import linear_to_srgb
    from pydeblur.degrade import blur_valid, valid_offset

    gain = HIGHLIGHT_GAIN if condition == "highlights" else 1.0
    light = torch.from_numpy(linear * gain).permute(2, 0, 1)[None]
    kh, kw = kernel.shape
    top, left = valid_offset(kh, kw)
    start_r = (light.shape[-2] - SIZE) // 2 - top
    start_c = (light.shape[-1] - SIZE) // 2 - left
    padded = light[..., start_r : start_r + SIZE + kh - 1, start_c : start_c + SIZE + kw - 1]
    blurred = blur_valid(padded.numpy(), kernel.astype(np.float64))[0].transpose(1, 2, 0)
    sharp = padded[0, :, top : top + SIZE, left : left + SIZE].permute(1, 2, 0).numpy()
    noise = np.random.default_rng(seed).normal(0, SIGMA, blurred.shape)
    camera = np.clip(blurred + noise, 0, 1)
    encoded = np.round(np.clip(linear_to_srgb(camera), 0, 1) * 255).astype(np.uint8)
    if condition == "jpeg-q90":
        ok, data = cv2.imencode(".jpg", encoded[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
        encoded = cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1].copy()
    return encoded, np.clip(linear_to_srgb(np.clip(sharp, 0, 1)), 0, 1)


def true_noise(encoded: np.ndarray, gamma: str) -> float:
    """The noise sigma `deblur` should be given: SIGMA in linear light, or, for the encoded values,
    SIGMA times the sRGB curve's slope at the image's median linear level."""
    from pydeblur.colour import srgb_slope

    if gamma == "srgb":
        return SIGMA
    return SIGMA / float(srgb_slope(float(np.median(encoded / 255.0))))


def run(model: str, photos: int, log=print) -> dict:
    """Every condition x variant: {"conditions": {condition: {variant: mean PSNR}}, ...}."""
    from pydeblur.metrics import image_psnr
    from pydeblur.restore import Deblurrer

    deblurrer = Deblurrer(model, device="cpu")
    crops = sharp_crops(photos)
    families = kernels()
    results: dict = {"conditions": {}, "images": len(crops), "kernels": [n for n, _ in families]}
    start = time.perf_counter()
    for condition in CONDITIONS:
        scores: dict[str, list[float]] = {"blurred input": []}
        for index, (_name, linear) in enumerate(crops):
            _kernel_name, kernel = families[index % len(families)]
            encoded, reference = degrade(linear, kernel, condition, seed=index)
            scores["blurred input"].append(image_psnr(encoded / 255.0, reference, BORDER))
            for label, gamma, clip_level, given in VARIANTS:
                sigma = true_noise(encoded, gamma) if given else None
                out = deblurrer(encoded, kernel, sigma, 1.0, gamma, clip_level)
                scores.setdefault(label, []).append(image_psnr(out / 255.0, reference, BORDER))
        results["conditions"][condition] = {k: float(np.mean(v)) for k, v in scores.items()}
        log(
            f"{condition}: "
            + ", ".join(f"{k} {v:.2f}" for k, v in results["conditions"][condition].items())
        )
    results["seconds"] = time.perf_counter() - start
    return results


def markdown(results: dict) -> str:
    labels = list(next(iter(results["conditions"].values())))
    lines = ["| condition | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for condition, row in results["conditions"].items():
        best = max(v for k, v in row.items() if k != "blurred input")
        cells = [f"**{row[k]:.2f}**" if row[k] == best else f"{row[k]:.2f}" for k in labels]
        lines.append(f"| {condition} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.realphoto", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--model", default="default", help="shipped model name or weights file")
    parser.add_argument("--photos", type=int, default=4, help="test photos (the split holds 4)")
    parser.add_argument("--out", type=Path, default=Path("runs/realphoto"), help="output folder")
    args = parser.parse_args(argv)
    results = run(args.model, args.photos, log=lambda line: print(line, file=sys.stderr))
    results["command"] = "python -m training.realphoto " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    table = markdown(results)
    print(table)
    from pydeblur.atomic import write_text

    args.out.mkdir(parents=True, exist_ok=True)
    write_text(args.out / "results.json", json.dumps(results, indent=1))
    write_text(args.out / "results.md", table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
