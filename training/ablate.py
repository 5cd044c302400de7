"""Ablations: `python -m training.ablate`: one choice of the shipped recipe changed per row.

Every row trains the `default` model configuration from scratch with the same short recipe (ABLATION_
RECIPE: same seed, data order, steps and learning-rate schedule) except for the one value its entry in
ROWS changes, then all finished rows are scored by `training.evaluate` on the paper protocol and on
Levin. The printed table gives each row's PSNR / SSIM and its difference from the `base` row.

    python -m training.ablate                                  # train what is missing, then score
    python -m training.ablate --rows base,snr-linear --no-score   # train some rows only
    python -m training.ablate --score-only                     # score the finished rows

Rows are short runs (800 steps by default against the shipped model's ~13,000): they rank the choices
at equal training; they do not say where each would end after a long run.
"""

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path
from typing import Any

from training import evaluate, train

ABLATION_RECIPE: dict[str, Any] = {
    "config": "default",
    "batch_size": 4,
    "crop": 96,
    "lr": 1e-3,
    "warmup_steps": 50,
    "epochs": 4,
    "steps_per_epoch": 200,
    "loss": "psnr",
    "photons": (1024.0, 524288.0),
    "gauss": (0.0, 8.0),
    "photo_scales": (1.0, 0.5, 0.3),
    "val_crops": 16,
    "val_crop": 128,
}
"""The base row's `TrainOptions` (the shipped recipe's choices, shortened)."""

ROWS: dict[str, tuple[str, dict[str, Any]]] = {
    "base": (
        "the shipped choices: SNRs in dB, no normalisation, no tail, PSNR loss, noise ranges",
        {},
    ),
    "seed-1": (
        "the base again with another seed (initialisation, data order, noise): run-to-run spread",
        {"seed": 1},
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
    name: str, out: Path, steps_per_epoch: int | None, threads: int | None, data: str | None = None
):
    """The TrainOptions of one row, written to out/name."""
    if name not in ROWS:
        raise ValueError(f"unknown ablation row {name!r}; rows: {', '.join(ROWS)}")
    values = {
        **ABLATION_RECIPE,
        **ROWS[name][1],
        "out": str(out / name),
        "threads": threads,
        "data": data,
    }
    if steps_per_epoch is not None:
        values["steps_per_epoch"] = steps_per_epoch
    return train.TrainOptions(**values)


def finished(opts: train.TrainOptions) -> bool:
    path = Path(opts.out) / "last.pt"
    return path.exists() and int(train.load_checkpoint(path)["epoch"]) >= opts.epochs


def share_scaled_photos(opts: train.TrainOptions, out: Path) -> None:
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


def train_row(name: str, opts: train.TrainOptions, out: Path) -> None:
    if finished(opts):
        print(f"{name}: finished, kept", file=sys.stderr)
        return
    share_scaled_photos(opts, out)
    resume = (Path(opts.out) / "last.pt").exists()
    print(f"{name}: {'resuming' if resume else 'training'} {ROWS[name][0]}", file=sys.stderr)
    train.run(opts, resume=resume)


def score(
    names: list[str], out: Path, paper_limit: int, threads: int | None, evaluate_args: list[str]
) -> dict[str, Any]:
    """Evaluate the rows' last weights; return {"rows": {name: {...}}, "evaluation": results.json}."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    weights = [out / name / "last.safetensors" for name in names]
    argv = ["--sets", "paper,levin", "--limit", f"paper={paper_limit}", "--models-only"]
    argv += ["--no-figures", "--out", str(out / "evaluation"), *evaluate_args]
    for path in weights:
        argv += ["--model", str(path)]
    evaluate.main(argv)
    results = json.loads((out / "evaluation" / "results.json").read_text())
    rows = {}
    for name, card in zip(names, results["models"], strict=True):
        method = f"Model: {card['label']}"
        scores = {
            s: {k: block["methods"][method][k] for k in ("psnr", "ssim")}
            for s, block in results["sets"].items()
        }
        rows[name] = {
            "change": ROWS[name][0],
            "scores": scores,
            "time_s": results["sets"]["paper"]["methods"][method].get("time_s"),
            "steps": card.get("steps"),
            "val_psnr": card.get("metrics", {}).get("val_psnr"),
            "parameters": parameter_count(out / name / "last.safetensors"),
        }
    return {"rows": rows, "evaluation": results}


def parameter_count(path: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        return sum(math.prod(handle.get_slice(key).get_shape()) for key in handle.keys())


def table(report: dict[str, Any]) -> str:
    rows = report["rows"]
    base = rows.get("base")
    lines = [
        "| row | what changes | paper protocol PSNR / SSIM | Levin PSNR / SSIM | Δ paper | Δ Levin "
        "| parameters | time (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        paper, levin = row["scores"]["paper"], row["scores"]["levin"]
        deltas = ["", ""]
        if base is not None and name != "base":
            deltas = [
                f"{row['scores'][s]['psnr'] - base['scores'][s]['psnr']:+.2f}"
                for s in ("paper", "levin")
            ]
        time_s = f"{row['time_s']:.3f}" if row["time_s"] is not None else ""
        lines.append(
            f"| {name} | {row['change']} | {paper['psnr']:.2f} / {paper['ssim']:.3f} | "
            f"{levin['psnr']:.2f} / {levin['ssim']:.3f} | {deltas[0]} | {deltas[1]} | "
            f"{row['parameters']:,} | {time_s} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m training.ablate", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated: {','.join(ROWS)}")
    parser.add_argument("--out", type=Path, default=Path("runs/ablation"), help="output folder")
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
    if args.no_score and args.score_only:
        parser.error("--no-score and --score-only exclude each other")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    options = {
        n: row_options(n, args.out, args.steps_per_epoch, args.threads, args.data)
        for n in args.rows
    }
    if not args.score_only:
        for name, opts in options.items():
            train_row(name, opts, args.out)
    if args.no_score:
        return 0
    done = [name for name in ROWS if name in options and finished(options[name])]
    missing = [name for name in args.rows if name not in done]
    if missing:
        print(f"not finished, not scored: {', '.join(missing)}", file=sys.stderr)
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
    report["options"] = {n: dataclasses.asdict(options[n]) for n in done}
    text = table(report)
    (args.out / "ablation.md").write_text(text + "\n")
    (args.out / "ablation.json").write_text(json.dumps(report, indent=1))
    print(text)
    print(f"\nwrote {args.out / 'ablation.md'} and {args.out / 'ablation.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
