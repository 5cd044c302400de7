"""The noise estimator, old (finest diagonal Haar detail) against new (mixed third difference): mean
relative error of sigma on the evaluation sets whose noise is known, and the time on a 12-megapixel
RGB image. Run from the repository root:

    PYTHONPATH=. python benchmarks/results/2026-12-04-noise-estimator/compare.py
"""

import time

import torch

from pydeblur.noise import estimate_noise_sigma
from training import eval_sets


def haar_sigma(y: torch.Tensor) -> torch.Tensor:
    """The estimator before 2026-12-04 (as skimage.restoration.estimate_sigma)."""
    return eval_sets.haar_detail(y).flatten(1).abs().median(dim=1).values / 0.6745


def relative_error(items, estimator) -> tuple[float, float, float]:
    true = torch.tensor([item["noise_var"] ** 0.5 for item in items], dtype=torch.float64)
    est = torch.cat([estimator(item["blurred"][None].double()) for item in items])
    return (
        float(true.mean()),
        float(((est - true) / true).mean()),
        float(((est - true) / true).abs().mean()),
    )


def main() -> None:
    sets = {
        "paper (64)": eval_sets.paper_items("data/test_set.safetensors", 64),
        "levin-synthetic (32)": eval_sets.levin_synthetic_items(),
    }
    kodak = eval_sets.kodak_items(limit=24)
    for sigma in eval_sets.KODAK_SIGMAS:
        sets[f"Kodak {sigma} (24)"] = [
            i for i in kodak if abs(i["noise_var"] ** 0.5 - sigma) < 1e-9
        ]
    print(
        "| set | mean true sigma | Haar: mean signed / abs relative error | third difference: signed / abs |"
    )
    print("|---|---|---|---|")
    for name, items in sets.items():
        sigma, h_signed, h_abs = relative_error(items, haar_sigma)
        _, t_signed, t_abs = relative_error(items, estimate_noise_sigma)
        print(
            f"| {name} | {sigma:.5f} | {h_signed:+.1%} / {h_abs:.1%} | {t_signed:+.1%} / {t_abs:.1%} |"
        )

    big = torch.rand(1, 3, 3000, 4000)
    for label, estimator in (("Haar", haar_sigma), ("third difference", estimate_noise_sigma)):
        estimator(big)
        start = time.perf_counter()
        for _ in range(3):
            estimator(big)
        print(f"{label}: {(time.perf_counter() - start) / 3:.2f} s on 1x3x3000x4000 float32")


if __name__ == "__main__":
    main()
