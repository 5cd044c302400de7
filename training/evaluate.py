"""Evaluate the classical baselines and any number of models on the paper protocol, Levin and Kodak.

    python -m training.evaluate [--sets paper,levin,kodak] [--model NAME_OR_PATH ...] [--limit N]
                                [--out DIR] [--test-set FILE] [--device cpu|cuda]

For each benchmark: mean PSNR and SSIM per group (exposure, kernel or noise level) and overall, for the
blurred input, the paper's baseline (one Wiener filter at the set's average SNR, then the bilateral
filter), the best single Wiener filter for the set and the per-image oracle Wiener filter (both chosen
knowing the sharp images: upper bounds for Wiener filtering), Richardson-Lucy, ADMM-TV, and each model
(labelled by its model card), and the published peers whose weights are in --peers (FDN). On the paper
protocol also the time per 256x256 image (batch 1). Prints
Markdown, writes OUT/results.md, OUT/results.json and comparison figures OUT/figures/*.png.
See docs/evaluation.md for every definition.
"""

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch

from training import eval_sets
from training.eval_methods import (
    BLURRED,
    DEFAULT_TUNING,
    Method,
    SetWiener,
    calibrate,
    classical_methods,
    model_method,
    peer_methods,
    run_method,
    set_nsr,
    time_method,
)
from training.eval_report import (
    PAPER_TABLE_1,
    environment,
    figure_indices,
    markdown,
    publish,
    summarise,
)

SETS = ("paper", "levin", "kodak", "levin-synthetic")
DEFAULT_SETS = SETS[:3]
DEFAULT_TEST_SET = Path("data/test_set.safetensors")
SET_TITLES = {
    "paper": "Paper protocol: held-out test photos, 4 exposures per crop",
    "levin": "Levin et al. 2009: 32 real camera-shake images (best shift within +-5 px in 0.25-px steps, 15 px border)",
    "kodak": "Kodak 24 photos x 8 Levin kernels, Gaussian noise",
    "levin-synthetic": "Levin's sharp images blurred synthetically with their kernels, noise as "
    "estimated from the captures (a diagnostic; Levin's scoring)",
}


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
        scores, kept[method.name] = run_method(method, items, device, keep)
        results[method.name] = summarise(items, scores)
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
            "groups": eval_sets.group_order(item["group"] for item in items),
            "average_snr_db": average_snr,
            "paper_baseline_nsr": nsr,
            "best_single_nsr": set_wiener.nsr,
            "tuned": tuned,
            "timed_image": list(items[0]["blurred"].shape) if timing else None,
            "noise_estimate": eval_sets.noise_estimate_error(items),
            "methods": results,
            "names": [item["name"] for item in items],
        },
        kept,
    )


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
    parser.add_argument("--levin", type=Path, default=eval_sets.DATA / "levin")
    parser.add_argument("--kodak", type=Path, default=eval_sets.DATA / "kodak")
    parser.add_argument(
        "--kodak-crop", type=int, default=eval_sets.KODAK_CROP, help="central crop side"
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
        "--peers",
        type=Path,
        default=eval_sets.DATA / "peers",
        help="folder of published peers' weights, rows of every table (default: the shared data's)",
    )
    parser.add_argument("--no-peers", action="store_true", help="leave out the published peers")
    parser.add_argument(
        "--models-only",
        action="store_true",
        help="rows: the blurred input and the models only (skip the classical methods and peers)",
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
        return eval_sets.paper_items(args.test_set, args.limit.get(name))
    if name == "levin":
        return eval_sets.levin_items(args.levin, args.limit.get(name))
    if name == "levin-synthetic":
        return eval_sets.levin_synthetic_items(args.levin, args.limit.get(name))
    return eval_sets.kodak_items(
        args.kodak, args.levin, crop=args.kodak_crop, limit=args.limit.get(name)
    )


def distinct_rows(methods: list, cards: list[dict]) -> list:
    """The models' rows, those that share a label (two weights files whose cards give one name)
    told apart by their files' folder/stem, so that no row replaces another in the tables.

    >>> from training.eval_methods import Method
    >>> rows = [Method("Model: default", None), Method("Model: default", None)]
    >>> cards = [{"path": "pydeblur/weights/default.safetensors"}, {"path": "/runs/ba/tuned.safetensors"}]
    >>> [row.name for row in distinct_rows(rows, cards)]
    ['Model: default (weights/default)', 'Model: default (ba/tuned)']
    """
    names = [method.name for method in methods]
    rows = []
    for method, card in zip(methods, cards, strict=True):
        if names.count(method.name) > 1:
            path = Path(card["path"])
            method = dataclasses.replace(
                method, name=f"{method.name} ({path.parent.name}/{path.stem})"
            )
        rows.append(method)
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    models, cards = [], []
    for name in args.model:
        method, card = model_method(name, device, args.model_batch)
        models.append(method)
        cards.append(card)
    models = distinct_rows(models, cards)
    if not (args.models_only or args.no_peers):
        models += peer_methods(args.peers)
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


if __name__ == "__main__":
    sys.exit(main())
