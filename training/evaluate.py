"""Evaluate the classical baselines and any number of models on the paper protocol, Levin and Kodak.

    python -m training.evaluate [--sets paper,levin,kodak] [--model NAME_OR_PATH ...] [--limit N]
                                [--out DIR] [--test-set FILE] [--device cpu|cuda]

For each benchmark: mean PSNR and SSIM per group (exposure, kernel or noise level) and overall, for the
blurred input, the paper's baseline (one Wiener filter at the set's average SNR, then the bilateral
filter), the best single Wiener filter for the set and the per-image oracle Wiener filter (both chosen
knowing the sharp images: upper bounds for Wiener filtering), Richardson-Lucy, ADMM-TV, and each model
(labelled by its model card). On the paper protocol also the time per 256x256 image (batch 1). Prints
Markdown, writes OUT/results.md, OUT/results.json and comparison figures OUT/figures/*.png.
See docs/evaluation.md for every definition.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from pydeblur import baselines
from pydeblur.atomic import write_text
from pydeblur.metrics import psnr
from pydeblur.noise import signal_to_noise_db, snr_to_nsr
from training import benchmarks_data

SETS = ("paper", "levin", "kodak", "levin-synthetic")
DEFAULT_SETS = SETS[:3]
DEFAULT_TEST_SET = Path("data/test_set.safetensors")
PAPER_TABLE_1 = [
    {"method": "Paper: network (their Table 1)", "psnr": 26.1, "time_s": 0.347},
    {"method": "Paper: Wiener + bilateral baseline (their Table 1)", "psnr": 16.6, "time_s": 0.023},
]
SET_TITLES = {
    "paper": "Paper protocol: held-out test photos, 4 exposures per crop",
    "levin": "Levin et al. 2009: 32 real camera-shake images (best shift within +-5 px, 15 px border)",
    "kodak": "Kodak 24 photos x 8 Levin kernels, Gaussian noise",
    "levin-synthetic": "Levin's sharp images blurred synthetically with their kernels, noise as "
    "estimated from the captures (a diagnostic; Levin's scoring)",
}
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
    """A row of the tables: run(blurred [B,C,H,W], psf [B,1,kh,kw], sharp [B,C,H,W]) -> [B,C,H,W]."""

    name: str
    run: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
    batch_size: int = 8


# ---------------------------------------------------------------------------------------------------
# Scoring


def score_images(
    restored: torch.Tensor, sharp: torch.Tensor, aligned: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """(PSNR [N], SSIM [N]) of restored against sharp, both [N, C, H, W], restored clipped to [0, 1].

    aligned: Levin's rule, the best integer shift within +-5 px and a 15 px border; SSIM is taken at
    the shift that gives the best PSNR. SSIM: `pydeblur.ops.ssim`, Gaussian window 11 / 1.5, "valid"
    padding (the skimage / pytorch_msssim convention)."""
    from pydeblur.ops import ssim

    restored = restored.clamp(0, 1).to(sharp.dtype)
    if aligned:
        mse, shift = benchmarks_data.aligned_mse(restored, sharp)
        windows, reference = benchmarks_data.aligned_pair(restored, sharp, shift)
        return (-10 * torch.log10(mse)).float(), ssim(
            windows, reference, padding="valid", reduction="none"
        )
    return psnr(restored, sharp).float(), ssim(restored, sharp, padding="valid", reduction="none")


def psnr_candidates(aligned: bool) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The oracle's score of candidates [B, S, C, H, W] against sharp [B, C, H, W] -> [B, S]."""
    if not aligned:
        return baselines.psnr_scores

    def score(candidates: torch.Tensor, sharp: torch.Tensor) -> torch.Tensor:
        b, s = candidates.shape[:2]
        flat = candidates.clamp(0, 1).flatten(0, 1)
        mse, _ = benchmarks_data.aligned_mse(
            flat, sharp.unsqueeze(1).expand_as(candidates).flatten(0, 1)
        )
        return (-10 * torch.log10(mse)).view(b, s).float()

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
        restored, _, scores = baselines.oracle_wiener(y, k, x, score=self.score)
        if self.nsr is None:
            self.scores.append(scores.double().cpu())
        return restored

    def best_fixed(self, y: torch.Tensor, k: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
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
            total += float(score_images(run(blurred, psf), sharp, chunk[0]["aligned"])[0].sum())
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

    model = load_model(name_or_path, device=device)
    path = resolve_weights(name_or_path)
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
    return tuple(
        torch.stack([item[key] for item in chunk]).to(device) for key in ("blurred", "psf", "sharp")
    )


@torch.inference_mode()
def run_method(
    method: Method, items: list[dict], device: torch.device, keep: set[int]
) -> tuple[torch.Tensor, torch.Tensor, dict[int, torch.Tensor]]:
    """PSNR [N] and SSIM [N] of every item, and the restored images of the items in `keep`."""
    aligned = items[0]["aligned"]
    psnrs, ssims, kept = [], [], {}
    for start, chunk in batches(items, method.batch_size):
        blurred, psf, sharp = stack(chunk, device)
        restored = method.run(blurred, psf, sharp)
        p, s = score_images(restored, sharp, aligned)
        psnrs.append(p.cpu())
        ssims.append(s.float().cpu())
        for offset in range(len(chunk)):
            if start + offset in keep:
                kept[start + offset] = restored[offset].clamp(0, 1).float().cpu()
    return torch.cat(psnrs), torch.cat(ssims), kept


@torch.inference_mode()
def time_method(
    method: Method, item: dict, device: torch.device, repeats: int = 3
) -> tuple[float, float]:
    """Median wall-clock and process CPU seconds for one image (batch 1) after one warm-up run. On a
    shared machine the wall time grows with the load; the CPU time (all threads) does not."""
    blurred, psf, sharp = stack([item], device)
    method.run(blurred, psf, sharp)
    walls, cpus = [], []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start, start_cpu = time.perf_counter(), time.process_time()
        method.run(blurred, psf, sharp)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - start_cpu)
    return statistics.median(walls), statistics.median(cpus)


def summarise(items: list[dict], psnrs: torch.Tensor, ssims: torch.Tensor) -> dict:
    groups: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        groups.setdefault(item["group"], []).append(index)
    result = {
        "psnr": float(psnrs.mean()),
        "ssim": float(ssims.mean()),
        "groups": {
            g: {"psnr": float(psnrs[i].mean()), "ssim": float(ssims[i].mean()), "n": len(i)}
            for g, i in groups.items()
        },
        "per_image": {"psnr": psnrs.tolist(), "ssim": ssims.tolist()},
    }
    return result


def evaluate_set(
    name: str,
    items: list[dict],
    models: list[Method],
    device: torch.device,
    timing: bool,
    figure_indices: list[int],
    log=print,
    calibration: bool | dict = True,
    timing_repeats: int = 3,
    classical: bool = True,
) -> tuple[dict, dict[str, dict[int, torch.Tensor]]]:
    """All methods on one benchmark: ({"methods": {name: summary}, ...}, restored images kept)."""
    aligned = items[0]["aligned"]
    average_snr, nsr = set_nsr(items)
    set_wiener = SetWiener(aligned)
    if classical:
        tuned = calibrate(items, device, log) if calibration is True else calibration
        methods = classical_methods(nsr, set_wiener, tuned) + models
    else:
        tuned = {"rl_iterations": None, "tv_weight": None}
        methods = [Method(BLURRED, lambda y, k, x: y)] + models
    keep = set(figure_indices)
    results, kept = {}, {}
    for method in methods:
        start = time.perf_counter()
        psnrs, ssims, kept[method.name] = run_method(method, items, device, keep)
        results[method.name] = summarise(items, psnrs, ssims)
        log(
            f"  {name}: {method.name}: {results[method.name]['psnr']:.2f} dB ({time.perf_counter() - start:.0f} s)"
        )
    if timing:
        for method in methods:
            wall, cpu = time_method(method, items[0], device, timing_repeats)
            results[method.name]["time_s"] = wall
            results[method.name]["cpu_time_s"] = cpu
    return (
        {
            "title": SET_TITLES[name],
            "n_images": len(items),
            "groups": benchmarks_data.group_order(item["group"] for item in items),
            "average_snr_db": average_snr,
            "paper_baseline_nsr": nsr,
            "best_single_nsr": set_wiener.nsr,
            "tuned": tuned,
            "timed_image": list(items[0]["blurred"].shape) if timing else None,
            "methods": results,
            "names": [item["name"] for item in items],
        },
        kept,
    )


# ---------------------------------------------------------------------------------------------------
# Reporting


def markdown(results: dict) -> str:
    lines = []
    for name, block in results["sets"].items():
        groups = block["groups"]
        timed = block["timed_image"] is not None
        lines.append(f"### {block['title']}")
        lines.append("")
        note = f"{block['n_images']} images; PSNR (dB) / SSIM."
        if block["best_single_nsr"] is not None:
            note += (
                f" Paper baseline nsr {block['paper_baseline_nsr']:.3g} (average SNR "
                f"{block['average_snr_db']:.2f} dB); best single nsr {block['best_single_nsr']:.3g}; "
                f"Richardson-Lucy {block['tuned']['rl_iterations']} iterations; ADMM-TV weight "
                f"{block['tuned']['tv_weight']}."
            )
        lines.append(note)
        lines.append("")
        header = ["method", *groups, "all"] + (["time (s)", "CPU time (s)"] if timed else [])
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        for method, r in block["methods"].items():
            cells = [f"{r['groups'][g]['psnr']:.2f} / {r['groups'][g]['ssim']:.3f}" for g in groups]
            cells.append(f"**{r['psnr']:.2f}** / {r['ssim']:.3f}")
            if timed:
                cells += [f"{r['time_s']:.3f}", f"{r['cpu_time_s']:.3f}"]
            lines.append("| " + " | ".join([method, *cells]) + " |")
        lines.append("")
        if name == "paper":
            lines.append(
                "For reference, the paper's own Table 1 (its data and its GPU, not measured here):"
            )
            lines.append("")
            lines.append("| method | PSNR (dB) | time (s) |")
            lines.append("|---|---|---|")
            for row in PAPER_TABLE_1:
                lines.append(f"| {row['method']} | {row['psnr']:.1f} | {row['time_s']:.3f} |")
            lines.append("")
    if results["models"]:
        lines.append("Models:")
        lines.append("")
        for model in results["models"]:
            config = model.get("config", {})
            shape = ", ".join(f"{k}={config[k]}" for k in sorted(config) if k != "snr_db")
            lines.append(f"- {model['label']} ({model['path']}): {shape}")
        lines.append("")
    env = results["environment"]
    lines.append(
        f"Run: `{results['command']}` on {env['device']}, {env['threads']} threads, torch {env['torch']}, "
        f"load average at start {env['load_average']}."
    )
    return "\n".join(lines)


def environment(device: torch.device) -> dict:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        name = f"CPU {name}"
    return {
        "device": name,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "load_average": [round(v, 1) for v in os.getloadavg()],
    }


# ---------------------------------------------------------------------------------------------------
# Command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m training.evaluate", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--sets",
        default=",".join(DEFAULT_SETS),
        help=f"comma-separated subset of {','.join(SETS)} (default {','.join(DEFAULT_SETS)})",
    )
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME_OR_PATH",
        help="a shipped model name or a .safetensors file; repeat for several (ablations)",
    )
    parser.add_argument(
        "--limit",
        default=None,
        help="at most N images per set (Kodak: per noise level), or per set: paper=64,kodak=24",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/evaluation"), help="output folder")
    parser.add_argument(
        "--test-set", type=Path, default=DEFAULT_TEST_SET, help="the paper protocol's test set file"
    )
    parser.add_argument("--levin", type=Path, default=benchmarks_data.DATA / "levin")
    parser.add_argument("--kodak", type=Path, default=benchmarks_data.DATA / "kodak")
    parser.add_argument(
        "--kodak-crop", type=int, default=benchmarks_data.KODAK_CROP, help="central crop side"
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--model-batch", type=int, default=4, help="images per model call")
    parser.add_argument("--no-timing", action="store_true", help="skip the per-image timing")
    parser.add_argument("--no-figures", action="store_true", help="skip the comparison figures")
    parser.add_argument(
        "--no-calibration",
        action="store_true",
        help="use the library's default RL iterations and TV weight instead of tuning them per set",
    )
    parser.add_argument("--rl-iterations", type=int, help="fix the RL iterations (no calibration)")
    parser.add_argument("--tv-weight", type=float, help="fix the ADMM-TV weight (no calibration)")
    parser.add_argument(
        "--timing-repeats", type=int, default=3, help="timed runs per method (median)"
    )
    parser.add_argument(
        "--models-only",
        action="store_true",
        help="rows: the blurred input and the models only (skip the classical methods)",
    )
    args = parser.parse_args(argv)
    args.sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    unknown = set(args.sets) - set(SETS)
    if unknown or not args.sets:
        parser.error(
            f"--sets must name some of {', '.join(SETS)}, got {', '.join(sorted(unknown)) or 'none'}"
        )
    if args.models_only and not args.model:
        parser.error("--models-only needs at least one --model")
    if args.timing_repeats < 1:
        parser.error(f"--timing-repeats must be at least 1, got {args.timing_repeats}")
    try:
        args.limit = parse_limits(args.limit)
    except ValueError as error:
        parser.error(f"--limit: {error}")
    return args


def fixed_tuning(args: argparse.Namespace) -> bool | dict:
    """True (calibrate per set) unless --no-calibration, --rl-iterations or --tv-weight fix the values."""
    if not (args.no_calibration or args.rl_iterations or args.tv_weight):
        return True
    return {
        "rl_iterations": args.rl_iterations or DEFAULT_TUNING["rl_iterations"],
        "tv_weight": args.tv_weight or DEFAULT_TUNING["tv_weight"],
    }


def parse_limits(text: str | None) -> dict[str, int]:
    """ "N" -> every set N; "paper=64,kodak=24" -> those sets (the others unlimited)."""
    if text is None:
        return {}
    if "=" not in text:
        pairs = [(name, text) for name in SETS]
    else:
        pairs = [tuple(part.split("=", 1)) for part in text.split(",") if part.strip()]
    limits = {}
    for name, value in pairs:
        name = name.strip()
        if name not in SETS:
            raise ValueError(f"unknown set {name!r} (have {', '.join(SETS)})")
        if not value.strip().isdigit() or int(value) < 1:
            raise ValueError(f"a limit must be a positive integer, got {value!r}")
        limits[name] = int(value)
    return limits


def load_items(name: str, args: argparse.Namespace) -> list[dict]:
    if name == "paper":
        return benchmarks_data.paper_items(args.test_set, args.limit.get(name))
    if name == "levin":
        return benchmarks_data.levin_items(args.levin, args.limit.get(name))
    if name == "levin-synthetic":
        return benchmarks_data.levin_synthetic_items(args.levin, args.limit.get(name))
    return benchmarks_data.kodak_items(
        args.kodak, args.levin, crop=args.kodak_crop, limit=args.limit.get(name)
    )


def figure_indices(name: str, items: list[dict]) -> list[int]:
    """Which items the figures show: the 4 exposures of the crop with the most detail (gradient
    energy of the sharp image; paper), the first 4 items (Levin: 4 images, 4 kernels), the first
    photo at each noise level (Kodak)."""
    if name == "paper":
        per_crop = len(benchmarks_data.group_order(item["group"] for item in items))

        def detail(index: int) -> float:
            sharp = items[index]["sharp"]
            return float(sharp.diff(dim=-1).abs().mean() + sharp.diff(dim=-2).abs().mean())

        best = max(range(0, len(items), per_crop), key=detail)
        return list(range(best, min(best + per_crop, len(items))))
    if name.startswith("levin"):
        return list(range(min(4, len(items))))
    first = {}
    for index, item in enumerate(items):
        first.setdefault(item["group"], index)
    return list(first.values())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    models, cards = [], []
    for name in args.model:
        method, card = model_method(name, device, args.model_batch)
        models.append(method)
        cards.append(card)
    results = {
        "command": "python -m training.evaluate "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "environment": environment(device),
        "models": cards,
        "paper_table_1": PAPER_TABLE_1,
        "sets": {},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.sets:
        items = load_items(name, args)
        print(f"{name}: {len(items)} images", file=sys.stderr)
        shown = figure_indices(name, items)
        block, kept = evaluate_set(
            name,
            items,
            models,
            device,
            timing=(name == "paper" and not args.no_timing),
            figure_indices=shown,
            log=lambda line: print(line, file=sys.stderr),
            calibration=fixed_tuning(args),
            timing_repeats=args.timing_repeats,
            classical=not args.models_only,
        )
        results["sets"][name] = block
        if not args.no_figures:
            from training.figures import comparison_figure

            path = comparison_figure(
                args.out / "figures" / f"{name}.png", items, shown, kept, block
            )
            print(f"  wrote {path}", file=sys.stderr)
    publish(args.out / "results", markdown(results), results)
    return 0


def publish(stem: Path, text: str, data: dict) -> None:
    """Write the Markdown table to stem.md and every number to stem.json, and print the table."""
    markdown_path, json_path = stem.with_suffix(".md"), stem.with_suffix(".json")
    write_text(markdown_path, text + "\n")
    write_text(json_path, json.dumps(data, indent=1))
    print(text)
    print(f"\nwrote {markdown_path} and {json_path}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
