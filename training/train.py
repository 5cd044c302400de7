"""Train a DeblurNet: `python -m training.train --config NAME [options]`, or under torchrun for DDP.

Adam with linear warm-up and cosine decay, L2 / SSIM / L2-then-SSIM / mixed loss, validation PSNR and
SSIM after every epoch, a tqdm progress bar, a CSV log and a loss/PSNR plot, and checkpoints written
atomically after every epoch (`last.pt`, `best.pt`, and `best.safetensors` with its model card), so a
kill loses at most the current epoch, and a run starts by removing the partial files of killed writers.
`--resume` continues a run exactly (model, optimizer, scheduler, RNG states, epoch); `--init-from`
starts from another model's weights wherever names and shapes fit.
Under `torchrun --nproc_per_node N` it trains with DistributedDataParallel (NCCL on GPUs, gloo on
CPUs; `pydeblur.distributed`), each epoch's window of items split between the ranks
(`pydeblur.datasets.EpochSampler`), and logging and checkpoints on rank 0 only. The data of a run are
in `training.train_data`, its files (checkpoints, log, resume) in `training.checkpoints`, its options
and recipes in `training.configs`.
"""

import argparse
import dataclasses
import json
import math
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from pydeblur import datasets, distributed
from pydeblur.metrics import psnr
from pydeblur.model import CONFIGS, DeblurNet, ModelConfig
from pydeblur.weights_io import save_weights
from training.checkpoints import (
    atomic_save,
    clean_run_folder,
    init_from,
    load_checkpoint,
    model_card,
    resumed_options,
    rng_state,
    set_rng_state,
    write_log,
)
from training.configs import RECIPES, TrainOptions
from training.train_data import build_data, perturb_psf, unpack

LOSSES = ("l2", "psnr", "ssim", "l2-then-ssim", "mix")
TRAIN_ONLY = ("all", "stages", "last-stage")


def freeze(model: DeblurNet, train_only: str) -> None:
    """Turn off the gradients of the parameters `train_only` leaves out: "stages" trains the unrolled
    stages only, "last-stage" the last of them (greedy, stage-wise training); "all" everything."""
    if train_only == "all":
        return
    if model.stages is None:
        raise ValueError(f"--train-only {train_only} needs a model with stages")
    keep = model.stages if train_only == "stages" else model.stages.stages[-1]
    kept = {id(p) for p in keep.parameters()}
    for parameter in model.parameters():
        parameter.requires_grad_(id(parameter) in kept)


def run_device(opts: TrainOptions, where: distributed.Ranks) -> torch.device:
    """opts.device; under torchrun with CUDA, GPU LOCAL_RANK (one GPU per rank, whatever index)."""
    if opts.device.startswith("cuda") and where.world > 1:
        return where.device("cuda")
    return torch.device(opts.device)


# ---------------------------------------------------------------- optimisation


def lr_factor(step: int, opts: TrainOptions) -> float:
    """Linear warm-up for warmup_steps, then cosine decay to min_lr_ratio at the last step."""
    total = max(1, opts.epochs * opts.steps_per_epoch)
    if step < opts.warmup_steps:
        return (step + 1) / opts.warmup_steps
    progress = min(1.0, (step - opts.warmup_steps) / max(1, total - opts.warmup_steps))
    return opts.min_lr_ratio + (1 - opts.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def psnr_loss(output: torch.Tensor, sharp: torch.Tensor) -> torch.Tensor:
    """The mean over images of log10 MSE (-PSNR up to a scale): every image counts by its relative
    error, so nearly clean images are not drowned by the noisy ones as they are under plain L2."""
    per_image = (output.float() - sharp.float()).pow(2).flatten(1).mean(dim=1)
    return torch.log10(per_image + 1e-8).mean()


def loss_fn(
    output: torch.Tensor, sharp: torch.Tensor, opts: TrainOptions, epoch: int
) -> torch.Tensor:
    if opts.loss == "psnr":
        return psnr_loss(output, sharp)
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


STRENGTH_LR_FACTOR = 20.0  # the stages' log data strengths: one number each, they must move fast


def trained_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def parameter_groups(model: nn.Module, lr: float) -> list[dict[str, Any]]:
    """Adam's groups: the trained parameters at lr, the stages' log data strengths at
    STRENGTH_LR_FACTOR x lr (an empty group when there are none, so checkpoints always have two)."""
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    strengths = [p for name, p in named if name.endswith("log_strength")]
    others = [p for name, p in named if not name.endswith("log_strength")]
    return [{"params": others, "lr": lr}, {"params": strengths, "lr": lr * STRENGTH_LR_FACTOR}]


# ---------------------------------------------------------------- the loop


class Trainer:
    def __init__(self, opts: TrainOptions, where: distributed.Ranks):
        self.opts, self.where = opts, where
        self.device = run_device(opts, where)
        torch.manual_seed(opts.seed)
        self.model = DeblurNet(opts.model_config()).to(self.device)
        freeze(self.model, opts.train_only)
        if opts.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.Adam(parameter_groups(self.model, opts.lr), lr=opts.lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(step, opts)
        )
        self.epoch, self.step, self.best_psnr = 0, 0, -math.inf
        self.started = time.perf_counter()
        self.out_of_time = False
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
            if (
                self.opts.max_minutes
                and time.perf_counter() - self.started > 60 * self.opts.max_minutes
            ):
                self.out_of_time = True
                break
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
                nn.utils.clip_grad_norm_(trained_parameters(self.model), self.opts.grad_clip)
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
        card = model_card(self.opts, self.step, self.epoch, row)
        if improved:
            atomic_save(state, self.out / "best.pt")
            save_weights(self.model, self.out / "best.safetensors", card)
        save_weights(self.model, self.out / "last.safetensors", card)
        write_log(self.out, self.history)
        atomic_save(state, self.out / "last.pt")


def run(
    opts: TrainOptions,
    resume: bool = False,
    train_data: Any = None,
    val_batches: list[tuple[torch.Tensor, ...]] | None = None,
) -> DeblurNet:
    """Train per opts and return the model. train_data / val_batches replace the photo datasets."""
    if opts.loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {opts.loss!r}")
    if opts.train_only not in TRAIN_ONLY:
        raise ValueError(f"train_only must be one of {TRAIN_ONLY}, got {opts.train_only!r}")
    if resume:
        opts = resumed_options(opts)
    if opts.threads:
        torch.set_num_threads(opts.threads)
    where = distributed.start(distributed.backend_for(opts.device))
    if opts.max_minutes and where.world > 1:
        where.stop()
        raise ValueError("--max-minutes is for one process (ranks would stop at different steps)")
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
    # one loader for the whole run (persistent workers keep decoded photos); set_epoch per epoch
    window = opts.steps_per_epoch * opts.batch_size * where.world
    loader = datasets.make_loader(
        train_data,
        opts.batch_size,
        workers=opts.workers,
        drop_last=True,
        sampler=datasets.EpochSampler(len(train_data), window, opts.seed, where.rank, where.world),
        pin_memory=opts.device.startswith("cuda"),
    )
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
            where.barrier()
            if trainer.out_of_time:
                if where.main:
                    print(f"stopped after --max-minutes {opts.max_minutes:g}", flush=True)
                break
    finally:
        where.stop()
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
