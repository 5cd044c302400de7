"""Train a DeblurNet: `python -m training.train --config NAME [options]`, or under torchrun for DDP.

Adam with linear warm-up and cosine decay, L2 / SSIM / L2-then-SSIM / mixed loss, validation PSNR and
SSIM after every epoch, a tqdm progress bar, a CSV log and a loss/PSNR plot, and checkpoints written
atomically after every epoch (`last.pt`, `best.pt`, and `best.safetensors` with its model card), so a
kill loses at most the current epoch, and a run starts by removing the partial files of killed writers.
`--resume` continues a run exactly (model, optimizer, scheduler, RNG states, epoch); `--init-from`
starts from another model's weights wherever names and shapes fit.
Under `torchrun --nproc_per_node N` it trains with DistributedDataParallel (NCCL on GPUs, gloo on
CPUs), a DistributedSampler per epoch, and logging and checkpoints on rank 0 only.
"""

import argparse
import contextlib
import csv
import dataclasses
import json
import math
import os
import re
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from pydeblur.atomic import atomic_path, remove_leftovers, save_figure
from pydeblur.metrics import psnr
from pydeblur.model import CONFIGS, DeblurNet, ModelConfig
from pydeblur.weights_io import save_weights
from training.configs import RECIPES

LOSSES = ("l2", "psnr", "ssim", "l2-then-ssim", "mix")


@dataclass
class TrainOptions:
    """Everything a run depends on (saved in every checkpoint, so `--resume` continues the same run)."""

    config: str = "tiny"
    out: str = "runs/tiny"
    data: str | None = None  # folder of photos (None: the datasets' default)
    seed: int = 0
    split_seed: int = 0  # the photo split (pydeblur.datasets.split_photos), shared with evaluation
    init_from: str | None = None  # start from these weights (.safetensors or .pt) where shapes fit
    psf_error: float = 0.0  # kernel error given to the network (see perturb_psf); 0: the exact PSF
    photo_scales: tuple[float, ...] = (
        1.0,
    )  # train on the photos resized by each factor (see scaled_photos)
    batch_size: int = 2
    crop: int = 48
    lr: float = 1e-3
    min_lr_ratio: float = 0.05
    warmup_steps: int = 0
    epochs: int = 2
    steps_per_epoch: int = 2
    loss: str = "l2"
    ssim_weight: float = 0.0
    ssim_from_epoch: int = 0
    photons: tuple[float, float] = (2048.0, 2048.0)
    gauss: tuple[float, float] = (0.05, 0.05)
    val_crops: int = 2
    val_crop: int = 48
    workers: int = 0
    threads: int | None = None
    device: str = "cpu"
    bf16: bool = False
    channels_last: bool = False
    grad_clip: float = 1.0
    model: dict[str, Any] = field(default_factory=dict)  # ModelConfig overrides

    def model_config(self) -> ModelConfig:
        base = CONFIGS[self.config].to_dict() if self.config in CONFIGS else {}
        if not base:
            raise ValueError(f"unknown config {self.config!r}; known: {', '.join(sorted(CONFIGS))}")
        return ModelConfig.from_dict({**base, **self.model})


# ---------------------------------------------------------------- distributed


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str) -> Dist:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK); single process else."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return Dist(rank, world, local_rank)


def run_device(opts: TrainOptions, where: Dist) -> torch.device:
    if opts.device.startswith("cuda") and where.world > 1:
        return torch.device("cuda", where.local_rank)
    return torch.device(opts.device)


# ---------------------------------------------------------------- data


DEFAULT_PHOTOS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "photos"
TRAIN_REPEATS = 1000  # the training photo list repeated: crop c comes from photo c % n_photos


def build_data(opts: TrainOptions) -> tuple[Any, list[tuple[torch.Tensor, ...]]]:
    """The training dataset (train split) and a fixed validation list of (blurred, psf, sharp).

    Training crops cycle through the photos (crop c of photo c % n) so that any window of
    consecutive crops covers every photo, with opts.photons / opts.gauss noise ranges. Validation
    uses the val split at the paper's noise (lambda 2048, sigma 0.05), the protocol of the test set.
    """
    from pydeblur import datasets

    split = datasets.split_photos(opts.data or DEFAULT_PHOTOS, seed=opts.split_seed)
    photos = [
        path
        for scale in opts.photo_scales
        for path in scaled_photos(split["train"], scale, Path(opts.out) / f"photos_x{scale:g}")
    ]
    train = datasets.BlurredCrops(
        photos * TRAIN_REPEATS,
        crops_per_photo=1,
        crop_size=opts.crop,
        photons=opts.photons,
        gauss=opts.gauss,
        augment=True,
        seed=opts.seed,
    )
    per_photo = max(1, opts.val_crops // (len(split["val"]) * len(train.exposures)))
    val = datasets.BlurredCrops(
        split["val"], per_photo, crop_size=opts.val_crop, seed=opts.seed + 1
    )
    items = [unpack(val[i]) for i in range(len(val))]
    val_batches = [
        tuple(torch.cat(part) for part in zip(*items[i : i + 8], strict=True))
        for i in range(0, len(items), 8)
    ]
    return train, val_batches


def scaled_photos(paths: list[str], scale: float, folder: Path) -> list[str]:
    """The photos resized by `scale` (area interpolation, 8-bit PNG, cached in folder); 1: as they are.

    The training photos are large wallpapers (about 1000 x 1600) with little detail per pixel; test
    images such as Levin's (255 x 255) and Kodak (768 x 512) have much more. Downscaled copies put
    that detail, and strong blur of detailed content, into training.
    """
    if scale == 1:
        return list(paths)
    if not 0 < scale < 1:
        raise ValueError(f"photo_scales must be in (0, 1], got {scale}")
    import cv2

    from pydeblur.io import read_image, write_image

    folder.mkdir(parents=True, exist_ok=True)
    scaled = []
    for path in paths:
        target = folder / (Path(path).stem + ".png")
        if not target.exists():
            image, _ = read_image(path)
            size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
            write_image(target, cv2.resize(image[..., :3], size, interpolation=cv2.INTER_AREA))
        scaled.append(str(target))
    return scaled


def unpack(item: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(blurred [B, 3, H, W], psf [B, 1, kh, kw], sharp [B, 3, H, W]) from a dataset item or batch."""
    if isinstance(item, dict):
        blurred, psf, sharp = item["blurred"], item["psf"], item["sharp"]
    else:
        blurred, psf, sharp = item
    if blurred.dim() == 3:
        blurred, psf, sharp = blurred[None], psf[None], sharp[None]
    return blurred, psf, sharp


class EpochSampler(torch.utils.data.Sampler):
    """Epoch e draws `count` items from a window of consecutive items, shuffled by (seed, e).

    The dataset is practically endless (every index is a new crop), so an epoch is a window, not a
    pass: epoch e starts where epoch e - 1 ended, and no item is seen twice until the dataset wraps.
    Windows of consecutive crops share `pydeblur.datasets`' trajectory blocks (128 crops made by one
    vectorised call), which makes loading about 3x cheaper than indices scattered over the dataset.
    With world > 1 it is a distributed sampler: rank r takes items r, r + world, ... of the shuffled
    window (like DistributedSampler, whose per-epoch pass over the whole dataset does not fit here);
    call `set_epoch` before each epoch.
    """

    def __init__(self, n_items: int, count: int, seed: int, rank: int = 0, world: int = 1):
        if count % world:
            raise ValueError(f"count ({count}) must be a multiple of the world size ({world})")
        self.n_items, self.count, self.seed = n_items, count, seed
        self.rank, self.world, self.epoch = rank, world, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.count // self.world

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        window = (
            self.epoch * self.count + torch.randperm(self.count, generator=generator)
        ) % self.n_items
        return iter(window[self.rank :: self.world].tolist())


def make_loader(dataset, opts: TrainOptions, where: Dist) -> torch.utils.data.DataLoader:
    """One loader for the whole run (persistent workers keep decoded photos); set_epoch per epoch."""
    sampler = EpochSampler(
        len(dataset),
        opts.steps_per_epoch * opts.batch_size * where.world,
        opts.seed,
        where.rank,
        where.world,
    )
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=opts.batch_size,
        sampler=sampler,
        num_workers=opts.workers,
        pin_memory=opts.device.startswith("cuda"),
        drop_last=True,
        persistent_workers=opts.workers > 0,
    )


def perturb_psf(psf: torch.Tensor, strength: float | torch.Tensor) -> torch.Tensor:
    """A slightly wrong copy of psf [B, 1, kh, kw], as a real kernel estimate is.

    strength: one number, or one per image [B] (the training loop draws each image's from
    U(0, psf_error), so that exact and wrong kernels are both seen). Each tap is scaled by (1 + strength N(0, 1)), a faint haze (strength / 10 of the peak, uniform)
    spreads over the support dilated by one pixel, and the kernel moves by a random sub-pixel shift of
    up to strength pixels per axis (bilinear); the result is non-negative and sums to 1. The blurred
    image keeps the exact PSF: the network learns not to trust a kernel blindly. Draws from the torch
    RNG (saved in checkpoints, so resume stays exact).
    """
    batch = psf.shape[0]
    if not isinstance(strength, torch.Tensor) and strength <= 0:
        return psf
    strength = torch.as_tensor(strength, dtype=psf.dtype, device=psf.device).expand(batch)
    per_tap = strength.view(batch, 1, 1, 1)
    peak = psf.amax(dim=(-2, -1), keepdim=True)
    support = torch.nn.functional.max_pool2d(psf, 3, stride=1, padding=1) > 0
    noisy = psf * (1 + per_tap * torch.randn_like(psf))
    noisy = noisy + support * (per_tap / 10) * peak * torch.rand_like(psf)
    shift = (torch.rand(batch, 2, device=psf.device) * 2 - 1) * strength.view(batch, 1)
    kh, kw = psf.shape[-2:]
    theta = torch.zeros(batch, 2, 3, device=psf.device, dtype=psf.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, 0, 2] = 2 * shift[:, 0] / kw
    theta[:, 1, 2] = 2 * shift[:, 1] / kh
    grid = torch.nn.functional.affine_grid(theta, list(psf.shape), align_corners=False)
    moved = torch.nn.functional.grid_sample(noisy.clamp_min(0), grid, align_corners=False)
    return moved / moved.sum(dim=(-2, -1), keepdim=True).clamp_min(1e-12)


# ---------------------------------------------------------------- optimisation


def lr_factor(step: int, opts: TrainOptions) -> float:
    """Linear warm-up for warmup_steps, then cosine decay to min_lr_ratio at the last step."""
    total = max(1, opts.epochs * opts.steps_per_epoch)
    if step < opts.warmup_steps:
        return (step + 1) / opts.warmup_steps
    progress = min(1.0, (step - opts.warmup_steps) / max(1, total - opts.warmup_steps))
    return opts.min_lr_ratio + (1 - opts.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def loss_fn(
    output: torch.Tensor, sharp: torch.Tensor, opts: TrainOptions, epoch: int
) -> torch.Tensor:
    if opts.loss == "psnr":
        # mean over images of log MSE (-PSNR up to a scale): every image counts by its relative error,
        # so nearly clean images are not drowned by the noisy ones as they are under plain L2.
        per_image = (output.float() - sharp.float()).pow(2).flatten(1).mean(dim=1)
        return torch.log10(per_image + 1e-8).mean()
    mse = (output.float() - sharp.float()).pow(2).mean()
    use_ssim = opts.loss == "ssim" or (
        opts.loss == "l2-then-ssim" and epoch >= opts.ssim_from_epoch
    )
    if opts.loss == "l2" or (opts.loss == "l2-then-ssim" and not use_ssim):
        return mse
    from pydeblur.ops import ssim_loss

    structural = ssim_loss(output.float(), sharp.float())
    if opts.loss == "mix":
        return (1 - opts.ssim_weight) * mse + opts.ssim_weight * structural
    return structural


# ---------------------------------------------------------------- checkpoints


def rng_state() -> dict[str, Any]:
    """The torch RNG states (dropout, samplers). The data draw from their own seeded generators."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_save(obj: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


# The temporary names of the writers before pydeblur.atomic (this script's and pydeblur.model's
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


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A training checkpoint (tensors and plain values only: loaded with weights_only=True)."""
    return torch.load(path, map_location="cpu", weights_only=True)


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


# ---------------------------------------------------------------- the loop


class Trainer:
    def __init__(self, opts: TrainOptions, where: Dist):
        self.opts, self.where = opts, where
        self.device = run_device(opts, where)
        torch.manual_seed(opts.seed)
        self.model = DeblurNet(opts.model_config()).to(self.device)
        if opts.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=opts.lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(step, opts)
        )
        self.epoch, self.step, self.best_psnr = 0, 0, -math.inf
        self.history: list[dict[str, Any]] = []
        self.wrapped: nn.Module = self.model
        self.out = Path(opts.out)

    def wrap(self) -> None:
        if self.where.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.wrapped = DistributedDataParallel(self.model, device_ids=ids)

    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_state(),
            "epoch": self.epoch,
            "step": self.step,
            "best_psnr": self.best_psnr,
            "history": json.dumps(self.history),
            "options": json.dumps(dataclasses.asdict(self.opts)),
            "model_config": json.dumps(self.model.config.to_dict()),
        }

    def restore(self, state: dict[str, Any]) -> None:
        stored = ModelConfig.from_dict(json.loads(state["model_config"]))
        if stored != self.model.config:
            raise ValueError(
                f"checkpoint config {stored} differs from this run's {self.model.config}"
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.best_psnr = float(state["best_psnr"])
        self.history = json.loads(state["history"])

    def train_epoch(self, batches: Iterable, epoch: int) -> dict[str, float]:
        from tqdm import tqdm

        self.wrapped.train()
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.opts.bf16)
        total, count, samples, start = 0.0, 0, 0, time.perf_counter()
        bar = tqdm(
            batches,
            total=self.opts.steps_per_epoch,
            desc=f"epoch {epoch + 1}/{self.opts.epochs}",
            disable=not self.where.main,
            mininterval=1.0 if sys.stderr.isatty() else 30.0,
            dynamic_ncols=True,
        )
        for batch in bar:
            blurred, psf, sharp = (t.to(self.device, non_blocking=True) for t in unpack(batch))
            if self.opts.psf_error > 0:
                strength = torch.rand(psf.shape[0], device=psf.device) * self.opts.psf_error
                psf = perturb_psf(psf, strength)
            with autocast:
                output = self.wrapped(blurred, psf)
            loss = loss_fn(output, sharp, self.opts, epoch)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.opts.grad_clip > 0:
                nn.utils.clip_grad_norm_(self.model.parameters(), self.opts.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
            self.step += 1
            total, count, samples = total + loss.item(), count + 1, samples + blurred.shape[0]
            bar.set_postfix(
                loss=f"{total / count:.5f}", lr=f"{self.scheduler.get_last_lr()[0]:.2e}"
            )
        seconds = time.perf_counter() - start
        return {
            "train_loss": total / max(1, count),
            "steps": count,
            "seconds": seconds,
            "samples_per_s": samples * self.where.world / seconds,
        }

    @torch.no_grad()
    def validate(self, val_batches: list[tuple[torch.Tensor, ...]]) -> dict[str, float]:
        from pydeblur.ops import ssim

        self.model.eval()
        psnrs, ssims = [], []
        for blurred, psf, sharp in val_batches:
            blurred, psf, sharp = (
                blurred.to(self.device),
                psf.to(self.device),
                sharp.to(self.device),
            )
            output = self.model(blurred, psf).float().clamp(0, 1)
            psnrs.append(psnr(output, sharp.float()))
            ssims.append(ssim(output, sharp.float(), reduction="none").reshape(output.shape[0], -1))
        return {
            "val_psnr": float(torch.cat(psnrs).mean()),
            "val_ssim": float(torch.cat([s.mean(1) for s in ssims]).mean()),
        }

    def save(self, row: dict[str, Any]) -> None:
        """Rank 0: last.pt every epoch; best.pt and best.safetensors when validation PSNR improved.

        last.pt, what `--resume` continues from, is written last, with best_psnr updated for this
        epoch: a kill before it loses the epoch, and the resumed run writes all of its files again
        (best.pt and best.safetensors, last.safetensors, log.csv and curves.png).
        """
        self.out.mkdir(parents=True, exist_ok=True)
        improved = row.get("val_psnr", -math.inf) >= self.best_psnr
        if improved:
            self.best_psnr = row["val_psnr"]
        state = self.state()
        card = {
            "trained_with": "python -m training.train",
            "options": dataclasses.asdict(self.opts),
            "data": {
                "photos": f"{self.opts.data or 'pydeblur.datasets default'} (train split of "
                f"split_photos(seed={self.opts.split_seed})), PSFs from pydeblur.psf",
                "crop": self.opts.crop,
                "photo_scales": list(self.opts.photo_scales),
                "photons": list(self.opts.photons),
                "gauss": list(self.opts.gauss),
                "psf_error": self.opts.psf_error,
            },
            "seed": self.opts.seed,
            "steps": self.step,
            "epoch": self.epoch,
            "metrics": {k: row[k] for k in ("val_psnr", "val_ssim") if k in row},
        }
        if improved:
            atomic_save(state, self.out / "best.pt")
            save_weights(self.model, self.out / "best.safetensors", card)
        save_weights(self.model, self.out / "last.safetensors", card)
        write_log(self.out, self.history)
        atomic_save(state, self.out / "last.pt")


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


def run(
    opts: TrainOptions,
    resume: bool = False,
    train_data: Any = None,
    val_batches: list[tuple[torch.Tensor, ...]] | None = None,
) -> DeblurNet:
    """Train per opts and return the model. train_data / val_batches replace the photo datasets."""
    if opts.loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {opts.loss!r}")
    if resume:
        opts = resumed_options(opts)
    if opts.threads:
        torch.set_num_threads(opts.threads)
    where = setup_distributed(opts.device)
    trainer = Trainer(opts, where)
    if where.main:
        for path in clean_run_folder(trainer.out):
            print(f"removed {path}, left by a killed writer", flush=True)
    if resume:
        state = load_checkpoint(trainer.out / "last.pt")
        trainer.restore(state)
        # last.pt of runs before the fix stored best_psnr before the update for its own epoch
        best = trainer.out / "best.pt"
        if best.exists():
            trainer.best_psnr = max(trainer.best_psnr, float(load_checkpoint(best)["best_psnr"]))
        if where.main:  # a kill in the last epoch's log write (before the fix) left log.csv short
            write_log(trainer.out, trainer.history)
    elif opts.init_from:
        copied, total = init_from(trainer.model, opts.init_from)
        if where.main:
            print(f"init-from {opts.init_from}: {copied} of {total} tensors copied", flush=True)
    trainer.wrap()
    if train_data is None:
        train_data, built_val = build_data(opts)
        val_batches = built_val if val_batches is None else val_batches
    loader = make_loader(train_data, opts, where)
    try:
        for epoch in range(trainer.epoch, opts.epochs):
            loader.sampler.set_epoch(epoch)
            stats = trainer.train_epoch(loader, epoch)
            trainer.epoch = epoch + 1
            if where.main:
                row = {"epoch": epoch + 1, "step": trainer.step, **stats}
                row.update(trainer.validate(val_batches or []) if val_batches else {})
                row["lr"] = trainer.scheduler.get_last_lr()[0]
                trainer.history.append(row)
                trainer.save(row)
                print(
                    json.dumps(
                        {k: round(v, 5) if isinstance(v, float) else v for k, v in row.items()}
                    ),
                    flush=True,
                )
            if where.world > 1:
                dist.barrier()
    finally:
        if where.world > 1 and dist.is_initialized():
            dist.destroy_process_group()
    return trainer.model


def recipe_options(config: str) -> dict[str, Any]:
    """RECIPES[config] (empty for a config without one), checked against TrainOptions' fields."""
    recipe = RECIPES.get(config, {})
    fields = {f.name for f in dataclasses.fields(TrainOptions)}
    unknown = (set(recipe) - fields) | (set(recipe) & {"config", "out", "model"})
    if unknown:
        raise ValueError(f"recipe {config!r} sets unknown or fixed options: {sorted(unknown)}")
    return dict(recipe)


def parse_args(argv: list[str] | None = None) -> tuple[TrainOptions, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="tiny", help=f"model config: {', '.join(CONFIGS)}")
    parser.add_argument("--out", help="run folder (default runs/<config>)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out exactly")
    for f in dataclasses.fields(TrainOptions):
        if f.name in ("config", "out", "model"):
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(f.default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        elif f.name in ("photons", "gauss"):
            parser.add_argument(flag, type=float, nargs=2, metavar=("LOW", "HIGH"))
        elif f.name == "photo_scales":
            parser.add_argument(flag, type=float, nargs="+", metavar="SCALE")
        else:
            kind = {"threads": int, "data": str, "init_from": str}.get(f.name) or type(f.default)
            parser.add_argument(flag, type=kind)
    parser.add_argument(
        "--model-set",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="override one ModelConfig value, e.g. --model-set learn_nsr=true",
    )
    args = parser.parse_args(argv)
    values: dict[str, Any] = {"config": args.config, **recipe_options(args.config)}
    for f in dataclasses.fields(TrainOptions):
        value = getattr(args, f.name, None) if f.name not in ("config", "model") else None
        if value is not None:
            values[f.name] = tuple(value) if isinstance(value, list) else value
    values["out"] = args.out or f"runs/{args.config}"
    values["model"] = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.model_set)}
    for key in ("photons", "gauss"):
        if key in values:
            values[key] = tuple(float(v) for v in values[key])
    return TrainOptions(**values), args


def main(argv: list[str] | None = None) -> None:
    opts, args = parse_args(argv)
    run(opts, resume=args.resume)


if __name__ == "__main__":
    main()
