"""The files of a training run: checkpoints, the RNG states in them, the log, and resuming.

`last.pt` / `best.pt` (written atomically by `atomic_save`, read by `load_checkpoint`), the torch RNG
states they carry (`rng_state`, `set_rng_state`), `log.csv` and `curves.png` (`write_log`), the model
card of the weights files (`model_card`), the partial files of killed writers (`clean_run_folder`),
the options a resumed run takes from its checkpoint (`resumed_options`), and `init_from` another
model's weights.
"""

import contextlib
import csv
import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pydeblur.atomic import atomic_path, remove_leftovers, save_figure
from training.configs import TrainOptions


def rng_state() -> dict[str, Any]:
    """The torch RNG states (dropout, samplers). The data draw from their own seeded generators."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the torch RNG states saved by `rng_state` (the CUDA ones where CUDA is available)."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_save(obj: Any, path: Path) -> None:
    """`torch.save(obj)` to path, whole or not at all (`pydeblur.atomic.atomic_path`)."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A training checkpoint (tensors and plain values only: loaded with weights_only=True)."""
    return torch.load(path, map_location="cpu", weights_only=True)


# The temporary names of the writers before pydeblur.atomic (training.train's and pydeblur.model's
# `.NAME.tmpPID`): no writer uses them any more, so any such file is a killed writer's leftover.
_OLD_LEFTOVER = re.compile(
    r"^\.(?:(?:last|best)\.pt\.tmp|log\.csv\.tmp|curves\.png\.tmp\.png"
    r"|(?:last|best)\.(?:safetensors|json)\.tmp\d+)$"
)


def clean_run_folder(out: Path) -> list[Path]:
    """Remove what killed writers left in a run folder (and its scaled-photo folders); return it."""
    if not out.is_dir():
        return []
    folders = [out, *sorted(out.glob("photos_x*"))]
    removed = [path for folder in folders for path in remove_leftovers(folder)]
    for entry in out.iterdir():
        if _OLD_LEFTOVER.match(entry.name) and entry.is_file():
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
            removed.append(entry)
    return removed


def init_from(model: nn.Module, source: str) -> tuple[int, int]:
    """Copy the tensors of source (a .safetensors or a .pt checkpoint) whose names and shapes fit.

    Returns (copied, total) tensor counts of the model.
    """
    if source.endswith(".safetensors"):
        from safetensors.torch import load_file

        tensors = load_file(source)
    else:
        tensors = load_checkpoint(source)["model"]
    own = model.state_dict()
    fitting = {k: v for k, v in tensors.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(fitting, strict=False)
    return len(fitting), len(own)


def model_card(opts: TrainOptions, step: int, epoch: int, row: dict[str, Any]) -> dict[str, Any]:
    """The card of the run's weights files: how they were trained (options, data, seed), how far
    (step, epoch), and the validation metrics of `row` (this epoch's log row)."""
    return {
        "trained_with": "python -m training.train",
        "options": dataclasses.asdict(opts),
        "data": {
            "photos": f"{opts.data or 'pydeblur.datasets default'} (train split of "
            f"split_photos(seed={opts.split_seed})), PSFs from pydeblur.psf",
            "crop": opts.crop,
            "photo_scales": list(opts.photo_scales),
            "photons": list(opts.photons),
            "gauss": list(opts.gauss),
            "psf_error": opts.psf_error,
        },
        "seed": opts.seed,
        "steps": step,
        "epoch": epoch,
        "metrics": {k: row[k] for k in ("val_psnr", "val_ssim") if k in row},
    }


def write_log(out: Path, history: list[dict[str, Any]]) -> None:
    """log.csv (one row per epoch) and curves.png (training loss and validation PSNR)."""
    if not history:
        return
    keys = list(history[0])
    with atomic_path(out / "log.csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    losses = [row["train_loss"] for row in history]
    left.plot(epochs, losses)
    # the PSNR loss (mean log10 MSE) is negative: a log axis only for the positive losses
    left.set(xlabel="epoch", ylabel="training loss", yscale="log" if min(losses) > 0 else "linear")
    right.plot(epochs, [row["val_psnr"] for row in history])
    right.set(xlabel="epoch", ylabel="validation PSNR (dB)")
    fig.tight_layout()
    save_figure(fig, out / "curves.png", dpi=100)


# Options that do not change the results: a resumed run takes them from the command line.
RUNTIME_OPTIONS = ("out", "workers", "threads", "device", "epochs")


def resumed_options(opts: TrainOptions) -> TrainOptions:
    """The options saved in opts.out/last.pt, with the runtime ones (and epochs) from opts."""
    path = Path(opts.out) / "last.pt"
    if not path.exists():
        raise FileNotFoundError(f"--resume: no checkpoint at {path}")
    saved = json.loads(load_checkpoint(path)["options"])
    for key in ("photons", "gauss", "photo_scales"):
        saved[key] = tuple(saved[key])
    for key in RUNTIME_OPTIONS:
        saved[key] = getattr(opts, key)
    return TrainOptions(**saved)
