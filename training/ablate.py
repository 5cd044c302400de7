"""Ablations: `python -m training.ablate`: one choice of the `default` recipe changed per row.

Every row trains the `default` model configuration from scratch with the same short recipe (ABLATION_
RECIPE: same seed, data order, steps and learning-rate schedule) except for the one value its entry in
ROWS changes, then all finished rows are scored by `training.evaluate` on the paper protocol and on
Levin. The printed table gives each row's PSNR / SSIM and its difference from the `base` row.

    python -m training.ablate                                  # train what is missing, then score
    python -m training.ablate --rows base,snr-linear --no-score   # train some rows only
    python -m training.ablate --seeds 0,1                      # every row twice: the spread
    python -m training.ablate --score-only                     # score the finished rows

With several `--seeds` each row is trained once per seed (initialisation, data order and noise; folder
NAME for seed 0, NAME-sS for seed S) and the table gives the mean over seeds and their spread.

Rows are short runs (800 steps by default against the shipped model's ~20,000): they rank the choices
at equal training; they do not say where each would end after a long run.
"""

import argparse
import dataclasses
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

from training import evaluate, train
from training.checkpoints import load_checkpoint
from training.configs import RECIPES, TrainOptions
from training.eval_report import publish

ABLATION_RECIPE: dict[str, Any] = {
    **RECIPES["default"],
    "config": "default",
    "crop": 96,
    "lr": 1e-3,
    "epochs": 4,
    "steps_per_epoch": 200,
    "val_crops": 16,
}
"""The base row's `TrainOptions`: the shipped recipe (`training.configs`), shortened."""

ROWS: dict[str, tuple[str, dict[str, Any]]] = {
    "base": (
        "the `default` config and recipe: SNRs in dB, no normalisation, no tail, PSNR loss, noise ranges",
        {},
    ),
    "snr-linear": (
        "the 15 SNRs read as linear ratios (nsr = 1/snr, the paper's code)",
        {"model": {"snr_mode": "linear"}},
    ),
    "normalize-input": (
        "features standardised per image (mean, std of the blurred image)",
        {"model": {"normalize_input": True}},
    ),
    "bilateral-tail": (
        "the bilateral filter as the last layer",
        {"model": {"bilateral_tail": True}},
    ),
    "loss-l2": ("L2 loss instead of the PSNR loss", {"loss": "l2"}),
    "loss-ssim": ("SSIM loss instead of the PSNR loss", {"loss": "ssim"}),
    "paper-config": (
        "the paper's network (12 ResBlocks, 64 channels, 5x5, dropout 0.2, direct output)",
        {"config": "paper"},
    ),
    "direct-head": (
        "the paper's direct output instead of the mix head over the Wiener stack",
        {"model": {"head": "direct"}},
    ),
    "no-context": ("without the multi-scale context branch", {"model": {"context_levels": 0}}),
    "kernel-errors": (
        "trained with kernel errors (per-image strength up to 0.3, as the shipped model's last stages)",
        {"psf_error": 0.3},
    ),
    "single-noise": (
        "trained at the paper's single noise level (lambda 2048, sigma 0.05) only",
        {"photons": (2048.0, 2048.0), "gauss": (0.05, 0.05)},
    ),
}
"""name -> (what changes, `TrainOptions` overrides of ABLATION_RECIPE; "model": ModelConfig overrides)."""


def row_options(
    name: str,
    out: Path,
    steps_per_epoch: int | None,
    threads: int | None,
    data: str | None = None,
    seed: int = 0,
) -> TrainOptions:
    """The TrainOptions of one row and seed, written to out/NAME (seed 0) or out/NAME-sSEED."""
    if name not in ROWS:
        raise ValueError(f"unknown ablation row {name!r}; rows: {', '.join(ROWS)}")
    folder = name if seed == 0 else f"{name}-s{seed}"
    values = {**ABLATION_RECIPE, **ROWS[name][1], "out": str(out / folder)}
    values |= {"threads": threads, "data": data, "seed": seed}
    if steps_per_epoch is not None:
        values["steps_per_epoch"] = steps_per_epoch
    return TrainOptions(**values)


def finished(opts: TrainOptions) -> bool:
    path = Path(opts.out) / "last.pt"
    return path.exists() and int(load_checkpoint(path)["epoch"]) >= opts.epochs


def share_scaled_photos(opts: TrainOptions, out: Path) -> None:
    """Point the row's downscaled-photo caches at one shared copy in out (made once, not per row)."""
    for scale in opts.photo_scales:
        if scale == 1:
            continue
        shared = out / f"photos_x{scale:g}"
        shared.mkdir(parents=True, exist_ok=True)
        link = Path(opts.out) / shared.name
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to(shared.resolve(), target_is_directory=True)


def train_row(name: str, opts: TrainOptions, out: Path) -> None:
    if finished(opts):
        print(f"{Path(opts.out).name}: finished, kept", file=sys.stderr)
        return
    share_scaled_photos(opts, out)
    resume = (Path(opts.out) / "last.pt").exists()
    action = "resuming" if resume else "training"
    print(f"{Path(opts.out).name}: {action} {ROWS[name][0]}", file=sys.stderr)
    train.run(opts, resume=resume)


def score(
    runs: dict[str, list[TrainOptions]],
    out: Path,
    paper_limit: int,
    threads: int | None,
    evaluate_args: list[str],
) -> dict[str, Any]:
    """Evaluate the runs' last weights (runs: row -> its finished seeds' options); return
    {"rows": {name: {...}}, "evaluation": evaluate's results.json}."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    argv = ["--sets", "paper,levin", "--limit", f"paper={paper_limit}", "--models-only"]
    argv += ["--no-figures", "--out", str(out / "evaluation"), *evaluate_args]
    for opts in (o for seeds in runs.values() for o in seeds):
        argv += ["--model", str(Path(opts.out) / "last.safetensors")]
    evaluate.main(argv)
    results = json.loads((out / "evaluation" / "results.json").read_text())
    cards = iter(results["models"])
    rows = {}
    for name, seeds in runs.items():
        per_seed = []
        for opts in seeds:
            card = next(cards)
            method = f"Model: {card['label']}"
            per_seed.append(
                {
                    "seed": opts.seed,
                    "steps": card.get("steps"),
                    "val_psnr": card.get("metrics", {}).get("val_psnr"),
                    "time_s": results["sets"]["paper"]["methods"][method].get("time_s"),
                    **{
                        s: {k: block["methods"][method][k] for k in ("psnr", "ssim")}
                        for s, block in results["sets"].items()
                    },
                }
            )
        rows[name] = {
            "change": ROWS[name][0],
            "scores": {
                s: {k: statistics.fmean(r[s][k] for r in per_seed) for k in ("psnr", "ssim")}
                | {
                    "spread": max(r[s]["psnr"] for r in per_seed)
                    - min(r[s]["psnr"] for r in per_seed)
                }
                for s in ("paper", "levin")
            },
            "seeds": per_seed,
            "time_s": statistics.median(r["time_s"] for r in per_seed),
            "parameters": parameter_count(Path(seeds[0].out) / "last.safetensors"),
        }
    return {"rows": rows, "evaluation": results}


def parameter_count(path: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        return sum(math.prod(handle.get_slice(key).get_shape()) for key in handle.keys())


def table(report: dict[str, Any]) -> str:
    """Markdown: one line per row, PSNR / SSIM as the mean over its seeds, the difference from the
    base row's mean, and (several seeds) the spread of PSNR between seeds."""
    rows = report["rows"]
    base = rows.get("base")
    seeded = any(len(row["seeds"]) > 1 for row in rows.values())
    header = "| row | what changes | seeds | paper protocol PSNR / SSIM | Levin PSNR / SSIM "
    header += "| Δ paper | Δ Levin " + ("| seed spread paper / Levin " if seeded else "")
    header += "| parameters | time (s) |"
    lines = [header, "|" + "---|" * header.count(" | ") + "---|"]
    for name, row in rows.items():
        scores = row["scores"]
        deltas = ["", ""]
        if base is not None and name != "base":
            deltas = [
                f"{scores[s]['psnr'] - base['scores'][s]['psnr']:+.2f}" for s in ("paper", "levin")
            ]
        cells = [name, row["change"], ",".join(str(r["seed"]) for r in row["seeds"])]
        cells += [f"{scores[s]['psnr']:.2f} / {scores[s]['ssim']:.3f}" for s in ("paper", "levin")]
        cells += deltas
        if seeded:
            spread = f"{scores['paper']['spread']:.2f} / {scores['levin']['spread']:.2f}"
            cells.append(spread if len(row["seeds"]) > 1 else "")
        time_s = f"{row['time_s']:.3f}" if row["time_s"] is not None else ""
        cells += [f"{row['parameters']:,}", time_s]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m training.ablate", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated: {','.join(ROWS)}")
    parser.add_argument("--out", type=Path, default=Path("runs/ablation"), help="output folder")
    parser.add_argument("--seeds", default="0", help="comma-separated training seeds per row")
    parser.add_argument("--data", help="training photo folder (default: the datasets' default)")
    parser.add_argument("--steps-per-epoch", type=int, help="override the recipe's 200 (4 epochs)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--paper-limit", type=int, default=64, help="paper protocol images scored")
    parser.add_argument(
        "--test-set", type=Path, help="the paper protocol's test set (evaluate's default)"
    )
    parser.add_argument("--timing-repeats", type=int, default=3, help="timed runs per row (median)")
    parser.add_argument("--no-score", action="store_true", help="train only")
    parser.add_argument("--score-only", action="store_true", help="score the finished rows only")
    args = parser.parse_args(argv)
    args.rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in args.rows if r not in ROWS]
    if unknown or not args.rows:
        parser.error(
            f"--rows must name some of {', '.join(ROWS)}, got {', '.join(unknown) or 'none'}"
        )
    try:
        args.seeds = sorted({int(v) for v in args.seeds.split(",") if v.strip()})
    except ValueError:
        parser.error(f"--seeds must be comma-separated integers, got {args.seeds!r}")
    if not args.seeds or min(args.seeds) < 0:
        parser.error("--seeds must name at least one seed >= 0")
    if args.no_score and args.score_only:
        parser.error("--no-score and --score-only exclude each other")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    runs = {
        name: [
            row_options(name, args.out, args.steps_per_epoch, args.threads, args.data, seed)
            for seed in args.seeds
        ]
        for name in ROWS
        if name in args.rows
    }
    if not args.score_only:
        for name, seeds in runs.items():
            for opts in seeds:
                train_row(name, opts, args.out)
    if args.no_score:
        return 0
    complete = {Path(o.out).name: finished(o) for seeds in runs.values() for o in seeds}
    missing = [folder for folder, ok in complete.items() if not ok]
    if missing:
        print(f"not finished, not scored: {', '.join(missing)}", file=sys.stderr)
    done = {name: [o for o in seeds if complete[Path(o.out).name]] for name, seeds in runs.items()}
    done = {name: seeds for name, seeds in done.items() if seeds}
    if not done:
        print("no finished row to score", file=sys.stderr)
        return 1
    evaluate_args = ["--timing-repeats", str(args.timing_repeats)]
    if args.test_set:
        evaluate_args += ["--test-set", str(args.test_set)]
    report = score(done, args.out, args.paper_limit, args.threads, evaluate_args)
    report["recipe"] = {
        k: list(v) if isinstance(v, tuple) else v for k, v in ABLATION_RECIPE.items()
    }
    report["options"] = {
        Path(o.out).name: dataclasses.asdict(o) for seeds in done.values() for o in seeds
    }
    publish(args.out / "ablation", table(report), report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
