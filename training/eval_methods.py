"""The rows of the evaluation tables: the classical methods, models, and how each is run and scored.

A `Method` restores a batch; `classical_methods` gives the classical rows of a set (the paper's
baseline, the two Wiener oracles of `SetWiener`, Richardson-Lucy and ADMM-TV, their parameters tuned
per set by `calibrate`), `model_method` a trained model's row. `run_method` scores a method over a
set's items (`score_images`: PSNR and SSIM, Levin's shift search where the set asks for it) and
`time_method` times it on one image. Items are those of `training.eval_sets`.
"""

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from pydeblur import baselines
from pydeblur.metrics import psnr
from pydeblur.noise import signal_to_noise_db, snr_to_nsr
from training import levin_scoring

BLURRED = "Blurred input"
PAPER_BASELINE = "Paper baseline: Wiener (set's average SNR) + bilateral"
BEST_FIXED = "Wiener, best single nsr for the set (oracle)"
ORACLE = "Wiener, per-image best nsr (oracle)"
RL = "Richardson-Lucy (iterations tuned for the set)"
ADMM = "ADMM-TV (weight tuned for the set)"
# The two classical parameters that depend on the noise level are picked per benchmark, knowing the
# sharp images of CALIBRATION_IMAGES evenly spaced images of it (favouring the classical methods).
CALIBRATION_IMAGES = 8
RL_ITERATION_GRID = (5, 10, 20, 30, 50)
TV_WEIGHT_GRID = (0.05, 0.1, 0.15, 0.25, 0.4, 0.6)
DEFAULT_TUNING = {
    "rl_iterations": baselines.RL_ITERATIONS,
    "tv_weight": baselines.TV_WEIGHT_PER_SIGMA,
}


@dataclass
class Method:
    """A row of the tables: run(blurred [B,C,H,W], psf [B,1,kh,kw], sharp [B,C,H,W]) -> [B,C,H,W].

    noise: run's third argument is instead each image's noise sigma [B] (the set's known noise where
    it defines one, else the estimate from the blurred image: the items' "noise_var")."""

    name: str
    run: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
    batch_size: int = 8
    noise: bool = False


# ---------------------------------------------------------------------------------------------------
# Scoring


def score_images(
    restored: torch.Tensor, sharp: torch.Tensor, aligned: bool
) -> dict[str, torch.Tensor]:
    """Scores of restored against sharp, both [N, C, H, W], restored clipped to [0, 1]: {"psnr": [N],
    "ssim": [N]}, and for an aligned set also "psnr_integer" [N].

    aligned: Levin's standard scoring (`training.levin_scoring`: the best shift within +-5 px in
    0.25-px steps, a 15 px border), with "psnr_integer" the same over integer shifts only; SSIM is
    taken at the shift that gives the best PSNR. SSIM: `pydeblur.ops.ssim`, Gaussian window 11 / 1.5,
    "valid" padding (the skimage / pytorch_msssim convention)."""
    from pydeblur.ops import ssim

    restored = restored.clamp(0, 1).to(sharp.dtype)
    if not aligned:
        return {
            "psnr": psnr(restored, sharp).float(),
            "ssim": ssim(restored, sharp, padding="valid", reduction="none"),
        }
    mse, shift = levin_scoring.best_shift(restored, sharp)
    integer, _ = levin_scoring.best_shift(restored, sharp, step=1)
    windows, reference = levin_scoring.shifted_windows(restored, sharp, shift)
    return {
        "psnr": (-10 * torch.log10(mse)).float(),
        "ssim": ssim(windows, reference, padding="valid", reduction="none"),
        "psnr_integer": (-10 * torch.log10(integer)).float(),
    }


def psnr_candidates(aligned: bool) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The oracle's score of candidates [B, S, C, H, W] against sharp [B, C, H, W] -> [B, S]: the
    set's own PSNR (Levin's standard scoring on an aligned set)."""
    if not aligned:
        return baselines.psnr_scores

    def score(candidates: torch.Tensor, sharp: torch.Tensor) -> torch.Tensor:
        b, s = candidates.shape[:2]
        flat = candidates.clamp(0, 1).flatten(0, 1)
        reference = sharp.unsqueeze(1).expand_as(candidates).flatten(0, 1)
        return levin_scoring.shifted_psnr(flat, reference).view(b, s).float()

    return score


# ---------------------------------------------------------------------------------------------------
# Methods


def set_nsr(items: list[dict]) -> tuple[float, float]:
    """The paper baseline's fixed nsr for a set: from the mean over its items of the SNR in dB,
    var(sharp) / noise variance (each item's "noise_var"). Returns (average SNR in dB, nsr)."""
    sharp = [item["sharp"][None] for item in items]
    values = torch.cat(
        [
            signal_to_noise_db(s, torch.tensor([item["noise_var"]], dtype=torch.float64))
            for s, item in zip(sharp, items, strict=True)
        ]
    )
    average = baselines.average_snr_db(values)
    return average, float(snr_to_nsr(average))


class SetWiener:
    """The two Wiener oracles of a set. `oracle` (per image, the best nsr of the grid) records every
    image's score for every grid nsr; `best_fixed` then uses the one grid nsr with the best mean score
    over the set (fixed at its first call, after `oracle` has seen the whole set)."""

    def __init__(self, aligned: bool):
        self.score = psnr_candidates(aligned)
        self.scores: list[torch.Tensor] = []
        self.nsr: float | None = None

    def oracle(self, y: torch.Tensor, k: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Each of y [B, C, H, W] (psf k [B, 1, kh, kw]) at the grid nsr that restores it best
        against x [B, C, H, W]; the scores of the whole grid are kept for `best_fixed`."""
        restored, _, scores = baselines.oracle_wiener(y, k, x, score=self.score)
        if self.nsr is None:
            self.scores.append(scores.double().cpu())
        return restored

    def best_fixed(self, y: torch.Tensor, k: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """y [B, C, H, W] restored at the set's best single grid nsr: [B, C, H, W] (x unused)."""
        if self.nsr is None:
            if not self.scores:
                raise RuntimeError("the per-image oracle must run over the set first")
            mean = torch.cat(self.scores).mean(0)
            self.nsr = float(baselines.ORACLE_NSR_GRID[int(mean.argmax())])
        return baselines.wiener(y, k, self.nsr)


def classical_methods(nsr: float, set_wiener: SetWiener, tuned: dict) -> list[Method]:
    """The classical rows, in table order (the per-image oracle must come before the best fixed).
    tuned: {"rl_iterations", "tv_weight"} from `calibrate`."""
    iterations, weight = tuned["rl_iterations"], tuned["tv_weight"]
    return [
        Method(BLURRED, lambda y, k, x: y),
        Method(PAPER_BASELINE, lambda y, k, x: baselines.paper_baseline(y, k, nsr)),
        Method(ORACLE, set_wiener.oracle, 4),
        Method(BEST_FIXED, set_wiener.best_fixed),
        Method(RL, lambda y, k, x: baselines.richardson_lucy(y, k, iterations)),
        Method(ADMM, lambda y, k, x: baselines.admm_tv(y, k, weight=weight)),
    ]


def evenly_spaced(count: int, total: int) -> list[int]:
    """`count` indices spread evenly over range(total) (all of them when count >= total)."""
    if count >= total:
        return list(range(total))
    return [round(i * (total - 1) / (count - 1)) if count > 1 else 0 for i in range(count)]


@torch.inference_mode()
def calibrate(items: list[dict], device: torch.device, log=print) -> dict:
    """The Richardson-Lucy iteration count and the ADMM-TV weight (lam per noise sigma) with the best
    mean PSNR on CALIBRATION_IMAGES evenly spaced images of the set, from RL_ITERATION_GRID and
    TV_WEIGHT_GRID."""
    chosen = [items[i] for i in evenly_spaced(CALIBRATION_IMAGES, len(items))]

    def mean_psnr(run) -> float:
        total = 0.0
        for _, chunk in batches(chosen, 4):
            blurred, psf, sharp = stack(chunk, device)
            scores = score_images(run(blurred, psf), sharp, chunk[0]["aligned"])
            total += float(scores["psnr"].sum())
        return total / len(chosen)

    rl = {
        n: mean_psnr(lambda y, k, n=n: baselines.richardson_lucy(y, k, n))
        for n in RL_ITERATION_GRID
    }
    tv = {w: mean_psnr(lambda y, k, w=w: baselines.admm_tv(y, k, weight=w)) for w in TV_WEIGHT_GRID}
    tuned = {
        "rl_iterations": max(rl, key=rl.get),
        "tv_weight": max(tv, key=tv.get),
        "calibration_images": [item["name"] for item in chosen],
        "rl_psnr": rl,
        "tv_psnr": tv,
    }
    log(f"  calibrated: RL {tuned['rl_iterations']} iterations, TV weight {tuned['tv_weight']}")
    return tuned


def model_method(name_or_path: str, device: torch.device, batch_size: int) -> tuple[Method, dict]:
    """A model as a table row, labelled by its model card ("name", else folder/stem of the file); greyscale
    inputs are replicated to 3 channels and the output's channels averaged."""
    from pydeblur.weights_io import load_model, read_card, resolve_weights

    path = resolve_weights(name_or_path)
    model = load_model(name_or_path, device=device)
    try:
        card = read_card(name_or_path)
    except FileNotFoundError:
        card = {}
    label = str(card.get("name") or f"{path.parent.name}/{path.stem}")
    channels = model.config.image_channels

    def run(y: torch.Tensor, k: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if y.shape[1] == 1 and channels == 3:
            return model(y.expand(-1, 3, -1, -1), k).mean(dim=1, keepdim=True)
        return model(y, k)

    summary = {
        "label": label,
        "path": str(path),
        **{k: card[k] for k in sorted(card) if k != "name"},
    }
    return Method(f"Model: {label}", run, batch_size), summary


FDN_ROW = "Peer: FDN (Kruse et al. 2017), the authors' weights, our inference"
FDN_LOW_NOISE = (1.0, 3.0)  # the sigma range (0..255) of the weights trained for it


def peer_methods(folder: str | os.PathLike) -> list[Method]:
    """The published peers whose weights are in `folder` (peers only: never trained on or shipped):
    FDN (`training.fdn`), grey channel by channel, its sigma input from the item's noise; the weights
    trained for sigma 1..3 (on 0..255) where the noise lies in that range, else those for 0.1..12.75."""
    from training.fdn import fdn_colour, load_fdn

    folder = Path(folder) / "fdn"
    if not folder.is_dir():
        return []
    low, wide = load_fdn(folder / "sigma_1.0-3.0"), load_fdn(folder / "sigma_0.1-12.75")

    def run(y: torch.Tensor, k: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        outputs = []
        for index in range(y.shape[0]):
            s = float(sigma[index])
            model = low if FDN_LOW_NOISE[0] <= 255 * s <= FDN_LOW_NOISE[1] else wide
            part = (y[index : index + 1].float(), k[index : index + 1].float(), [max(s, 1e-4)])
            outputs.append(fdn_colour(model, *part).to(y.dtype))
        return torch.cat(outputs)

    return [Method(FDN_ROW, run, batch_size=4, noise=True)]


# ---------------------------------------------------------------------------------------------------
# Running


def batches(items: list[dict], size: int):
    """Consecutive runs of items whose blurred and psf shapes agree, at most `size` long."""
    start = 0
    while start < len(items):
        end = start + 1
        shape = (items[start]["blurred"].shape, items[start]["psf"].shape)
        while (
            end < len(items)
            and end - start < size
            and (items[end]["blurred"].shape, items[end]["psf"].shape) == shape
        ):
            end += 1
        yield start, items[start:end]
        start = end


def stack(
    chunk: list[dict], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(blurred [B, C, H, W], psf [B, 1, kh, kw], sharp [B, C, H, W]) of items of one shape, on device."""
    return tuple(
        torch.stack([item[key] for item in chunk]).to(device) for key in ("blurred", "psf", "sharp")
    )


def third_argument(method: Method, chunk: list[dict], sharp: torch.Tensor) -> torch.Tensor:
    """What `method.run` takes after the kernel: the sharp images, or the noise sigmas [B]."""
    if not method.noise:
        return sharp
    return torch.tensor([item["noise_var"] ** 0.5 for item in chunk], dtype=torch.float64)


@torch.inference_mode()
def run_method(
    method: Method, items: list[dict], device: torch.device, keep: set[int]
) -> tuple[dict[str, torch.Tensor], dict[int, torch.Tensor]]:
    """The scores of every item (`score_images`: name -> [N]), and the restored images of the items
    in `keep`."""
    aligned = items[0]["aligned"]
    scores: dict[str, list[torch.Tensor]] = {}
    kept = {}
    for start, chunk in batches(items, method.batch_size):
        blurred, psf, sharp = stack(chunk, device)
        restored = method.run(blurred, psf, third_argument(method, chunk, sharp))
        for key, value in score_images(restored, sharp, aligned).items():
            scores.setdefault(key, []).append(value.float().cpu())
        for offset in range(len(chunk)):
            if start + offset in keep:
                kept[start + offset] = restored[offset].clamp(0, 1).float().cpu()
    return {key: torch.cat(values) for key, values in scores.items()}, kept


@torch.inference_mode()
def time_method(
    method: Method, item: dict, device: torch.device, repeats: int = 3
) -> tuple[float, float]:
    """Median wall-clock and process CPU seconds for one image (batch 1) after one warm-up run. On a
    shared machine the wall time grows with the load; the CPU time (all threads) does not."""
    blurred, psf, sharp = stack([item], device)
    third = third_argument(method, [item], sharp)
    method.run(blurred, psf, third)
    walls, cpus = [], []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start, start_cpu = time.perf_counter(), time.process_time()
        method.run(blurred, psf, third)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - start_cpu)
    return statistics.median(walls), statistics.median(cpus)
