"""The noise estimator at three scales: sigma_s = s x estimate_noise_sigma(y box-averaged over s x s)
(white noise reads the same at every scale; noise correlated between neighbours reads higher at the
coarser scales, and so does image content left in the detail). Per set: the known sigma (where the
set defines one) and the means of sigma_1, sigma_2, sigma_4, each x255. Diagnostic only.

    PYTHONPATH=. python benchmarks/results/2026-12-07-kernel-errors/noise_scales.py
"""

import torch
import torch.nn.functional as F

from pydeblur.noise import estimate_noise_sigma
from training import eval_sets


def at_scale(y, s):
    return s * estimate_noise_sigma(F.avg_pool2d(y, s) if s > 1 else y)


def main():
    sets = {
        "levin": eval_sets.levin_items(),
        "levin-synthetic": eval_sets.levin_synthetic_items(),
        "paper (64)": eval_sets.paper_items("data/test_set.safetensors", 64),
        "kodak (24)": eval_sets.kodak_items(limit=24),
    }
    print("set | known | sigma_1 | sigma_2 | sigma_4 (x255)")
    for name, items in sets.items():
        by_group = {}
        for it in items:
            y = it["blurred"][None].double()
            known = it["noise_var"] ** 0.5 if it.get("noise_known", True) else float("nan")
            group = it["group"] if name[0] in "kp" else ""
            by_group.setdefault(group, []).append(
                [known, *(float(at_scale(y, s)) for s in (1, 2, 4))]
            )
        for group, rows in by_group.items():
            mean = torch.tensor(rows).mean(0) * 255
            print(f"{name} {group} | " + " | ".join(f"{v:.2f}" for v in mean.tolist()), flush=True)


if __name__ == "__main__":
    main()
