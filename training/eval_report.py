"""The evaluation's report: per-set summaries, the Markdown tables, the run's environment, the files.

`summarise` turns per-image scores into a set's row (overall, per group, per image); `markdown` the
results into the tables of OUT/results.md; `environment` says where it ran; `publish` writes
OUT/results.md and OUT/results.json; `figure_indices` chooses the items the comparison figures show
(`training.figures`).
"""

import json
import os
import platform
import sys
from pathlib import Path

import torch

from pydeblur.atomic import write_text
from training import eval_sets

PAPER_TABLE_1 = [
    {"method": "Paper: network (their Table 1)", "psnr": 26.1, "time_s": 0.347},
    {"method": "Paper: Wiener + bilateral baseline (their Table 1)", "psnr": 16.6, "time_s": 0.023},
]


def summarise(items: list[dict], scores: dict[str, torch.Tensor]) -> dict:
    """A method's row of one set from its scores of every item (name -> [N]: "psnr", "ssim", and
    "psnr_integer" on Levin's sets): the means overall and per group (with "n"; groups in the order of
    the items), and per image."""
    groups: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        groups.setdefault(item["group"], []).append(index)
    result = {key: float(values.mean()) for key, values in scores.items()}
    result["groups"] = {
        g: {**{key: float(values[i].mean()) for key, values in scores.items()}, "n": len(i)}
        for g, i in groups.items()
    }
    result["per_image"] = {key: values.tolist() for key, values in scores.items()}
    return result


def markdown(results: dict) -> str:
    """The tables of results.md: per set one row per method, PSNR / SSIM per group and overall (and
    the times where the set was timed); the paper's Table 1 after the paper protocol's; the models;
    the command and the environment of the run."""
    lines = []
    for name, block in results["sets"].items():
        groups = block["groups"]
        timed = block["timed_image"] is not None
        lines.append(f"### {block['title']}")
        lines.append("")
        integer = all("psnr_integer" in r for r in block["methods"].values())
        note = f"{block['n_images']} images; PSNR (dB) / SSIM."
        if integer:
            note = (
                f"{block['n_images']} images; PSNR (dB) / SSIM by Levin's standard scoring (best "
                "shift in 0.25-px steps); the last PSNR column searches integer shifts only."
            )
        if block["best_single_nsr"] is not None:
            note += (
                f" Paper baseline nsr {block['paper_baseline_nsr']:.3g} (average SNR "
                f"{block['average_snr_db']:.2f} dB); best single nsr {block['best_single_nsr']:.3g}; "
                f"Richardson-Lucy {block['tuned']['rl_iterations']} iterations; ADMM-TV weight "
                f"{block['tuned']['tv_weight']}."
            )
        estimate = block.get("noise_estimate")
        if estimate:
            note += (
                f" Noise estimator (the models' automatic noise level): true sigma "
                f"{estimate['mean_sigma']:.4f} on average, estimated {estimate['mean_estimate']:.4f}, "
                f"mean error {estimate['mean_abs_error']:.4f} "
                f"({100 * estimate['mean_relative_error']:.1f} % of sigma)."
            )
        elif "noise_estimate" in block:
            note += " Noise: not known (no noise model); the models estimate it."
        lines.append(note)
        lines.append("")
        header = ["method", *groups, "all"] + (["all, integer shifts"] if integer else [])
        header += ["time (s)", "CPU time (s)"] if timed else []
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        for method, r in block["methods"].items():
            cells = [f"{r['groups'][g]['psnr']:.2f} / {r['groups'][g]['ssim']:.3f}" for g in groups]
            cells.append(f"**{r['psnr']:.2f}** / {r['ssim']:.3f}")
            if integer:
                cells.append(f"{r['psnr_integer']:.2f}")
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
    """Where the evaluation runs: the device's name (GPU, or the CPU's model), torch's threads and
    version, and the load average at the start (timings on a shared machine depend on it)."""
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


def figure_indices(name: str, items: list[dict]) -> list[int]:
    """Which items the figures show: the 4 exposures of the crop with the most detail (gradient
    energy of the sharp image; paper), the first 4 items (Levin: 4 images, 4 kernels), the first
    photo at each noise level (Kodak)."""
    if name == "paper":
        per_crop = len(eval_sets.group_order(item["group"] for item in items))

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


def publish(stem: Path, text: str, data: dict) -> None:
    """Write the Markdown table to stem.md and every number to stem.json, and print the table."""
    markdown_path, json_path = stem.with_suffix(".md"), stem.with_suffix(".json")
    write_text(markdown_path, text + "\n")
    write_text(json_path, json.dumps(data, indent=1))
    print(text)
    print(f"\nwrote {markdown_path} and {json_path}", file=sys.stderr)
