"""Train an `pydeblur.hqs.HQSNet`: stage by stage (greedy), then all stages jointly.

    python -m training.train_hqs --out RUN [--stages 4] [--greedy-steps 700] [--joint-steps 3000]
                                 [--data PHOTOS] [--crop-candidates N] [--dead-leaves N] [--bf16]
                                 [--max-minutes M] [--resume]

Phase t (1..stages) trains stage t alone, the stages before it frozen, for --greedy-steps; the last
phase trains every stage for --joint-steps. Data, noise and kernel errors are the shipped `default`
recipe's (`training.configs.RECIPES`, with --grey / --correlated-noise as `training.train` has them),
each crop the most detailed of --crop-candidates positions (docs/data.md), --dead-leaves synthetic
photos among the training photos (`training.dead_leaves`); the loss is the PSNR loss. After every
--epoch-steps steps the run writes RUN/last.pt (model, optimizer, phase and step, RNG: `--resume`
continues it) and, at the end of every phase, the weights
RUN/phaseN.safetensors with a JSON card and the validation PSNR (the val split at the paper's noise,
as `training.train` validates). --max-minutes stops at the end of an epoch, validated and saved;
with --time-schedule the learning rate's cosine follows the elapsed share of that time where it is
further along than the steps (a run on a time budget, such as `benchmarks/gpu_train.sh`'s, ends at
its lowest rate).
"""

import argparse
import json
import math
import time
from pathlib import Path

import torch

from pydeblur import datasets
from pydeblur.hqs import HQSConfig, HQSNet
from pydeblur.hqs_io import load_hqs, save_hqs
from pydeblur.metrics import psnr
from pydeblur.noise import estimate_noise_sigma
from training.checkpoints import atomic_save, load_checkpoint, rng_state, set_rng_state
from training.configs import RECIPES, TrainOptions
from training.train import psnr_loss
from training.train_data import (
    add_misfit_noise,
    add_white_noise,
    build_data,
    perturb_psf,
    unpack,
)

WEIGHT_LR_FACTOR = 20.0  # the data weights' a_t and b_t: one number each, they must move fast
# A grown model's new stages start with this data weight: near the identity, so growing keeps what
# the model does (run 7s2's validation: 28.64 dB with 4 stages, 28.58 with a fifth at 1e-4, 25.44 at
# the usual 1e-2), yet within a few hundred steps of the weights trained stages hold (1e-3 to 8e-3).
GROWN_START_WEIGHT = 1e-4


def phases(stages: int, greedy_steps: int, joint_steps: int) -> list[tuple[int, int, int]]:
    """(stages run, stages frozen, steps) per phase.

    >>> phases(2, 10, 30)
    [(1, 0, 10), (2, 1, 10), (2, 0, 30)]
    """
    greedy = [(t, t - 1, greedy_steps) for t in range(1, stages + 1) if greedy_steps > 0]
    return greedy + ([(stages, 0, joint_steps)] if joint_steps > 0 else [])


def load_stages(model: HQSNet, source: HQSNet, name: str = "source") -> int:
    """Copy source's stages into model's first ones (source may have fewer: the model is grown by
    new stages, which start near the identity, their data weight at GROWN_START_WEIGHT) -> how
    many were copied."""
    mine = {**model.config.to_dict(), "stages": 0}
    theirs = {**source.config.to_dict(), "stages": 0}
    differing = sorted(k for k in mine if mine[k] != theirs.get(k))
    if differing or source.config.stages > model.config.stages:
        what = ", ".join(f"{k} {theirs.get(k)} (not {mine[k]})" for k in differing) or (
            f"{source.config.stages} stages (more than {model.config.stages})"
        )
        raise ValueError(f"{name}: cannot start this model from it: {what}")
    model.load_state_dict(source.state_dict(), strict=False)
    with torch.no_grad():
        for stage in model.stages[source.config.stages :]:
            stage.log_weight.fill_(math.log(GROWN_START_WEIGHT))
    return source.config.stages


@torch.no_grad()
def validate(model: HQSNet, val_batches, upto: int) -> float:
    model.eval()
    scores = [
        psnr(model(b, k, upto=upto).float().clamp(0, 1), s.float()) for b, k, s in val_batches
    ]
    model.train()
    return float(torch.cat(scores).mean())


def optimizer_for(model: HQSNet, lr: float) -> torch.optim.Adam:
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    is_weight = [n.endswith(("log_weight", "weight_slope")) for n, _ in named]
    weights = [p for (_, p), w in zip(named, is_weight, strict=True) if w]
    others = [p for (_, p), w in zip(named, is_weight, strict=True) if not w]
    return torch.optim.Adam(
        [{"params": others, "lr": lr}, {"params": weights, "lr": lr * WEIGHT_LR_FACTOR}], lr=lr
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line's options; with --resume, the run's own (RUN/args.json, options it lacks at
    their defaults) but for --max-minutes and, when given, --joint-steps."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--data")
    parser.add_argument("--stages", type=int, default=4)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--activation", default="elu", help="elu or relu (pydeblur.hqs.HQSConfig)")
    parser.add_argument(
        "--start", default="blurred", help="x_0: blurred, or a shipped model's name (frozen)"
    )
    parser.add_argument(
        "--residual-input", action="store_true", help="the CNNs see the data term's gradient"
    )
    parser.add_argument("--filters", type=int, default=24, help="prior filters per stage (5x5)")
    parser.add_argument(
        "--start-weight", type=float, default=1e-2, help="data weight at the start x sigma^2"
    )
    parser.add_argument(
        "--init-from",
        help="start from these HQS weights (the same config with as many stages or fewer); the "
        "greedy phases of the stages they hold are skipped, so a model with more --stages grows",
    )
    parser.add_argument("--greedy-steps", type=int, default=700)
    parser.add_argument("--joint-steps", type=int, help="default 3000; on --resume: the run's")
    parser.add_argument("--epoch-steps", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--grey", type=float, default=0.2)
    parser.add_argument("--correlated-noise", type=float, default=0.2)
    parser.add_argument("--psf-error", type=float, default=0.3)
    parser.add_argument(
        "--misfit-noise",
        type=float,
        default=0.0,
        help="half the items get spatially correlated noise of rms up to this (on 0..255) that the "
        "noise estimator barely sees (training.train_data.add_misfit_noise); 0: none",
    )
    parser.add_argument(
        "--white-noise",
        type=float,
        default=0.0,
        help="the share of items that get white Gaussian noise besides the recipe's photon noise, "
        "sigma log-uniform in 0.5..12.75 of 255 (training.train_data.add_white_noise); 0: none",
    )
    parser.add_argument(
        "--crop-candidates", type=int, default=1, help="each crop the most detailed of this many"
    )
    parser.add_argument(
        "--dead-leaves", type=int, default=0, help="synthetic photos added (training.dead_leaves)"
    )
    parser.add_argument("--val-crops", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--max-minutes", type=float, default=0.0)
    parser.add_argument(
        "--time-schedule",
        action="store_true",
        help="the learning rate's cosine follows the elapsed share of --max-minutes when that is "
        "further along than the steps (a run on a time budget ends at its lowest rate)",
    )
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    if not args.resume:
        args.joint_steps = 3000 if args.joint_steps is None else args.joint_steps
        return args
    saved_path = Path(args.out) / "args.json"
    if not saved_path.exists():
        parser.error(f"--resume: no run to continue in {args.out} ({saved_path} is missing)")
    defaults = vars(parser.parse_args(["--out", args.out]))
    saved = {**defaults, "joint_steps": 3000, **json.loads(saved_path.read_text())}
    saved.update(resume=True, max_minutes=args.max_minutes)
    if args.joint_steps is not None:
        saved["joint_steps"] = args.joint_steps  # a longer (or shorter) joint phase
    return argparse.Namespace(**saved)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "args.json").write_text(json.dumps(vars(args), indent=2))
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    train_data, val_batches = training_data(args)
    run(args, train_data, val_batches)


def training_data(args: argparse.Namespace):
    """The run's training dataset and validation batches (`training.train_data.build_data` with the
    shipped recipe's noise and photo scales and the run's options; cached photos under args.out)."""
    recipe = {
        k: v for k, v in RECIPES["default"].items() if k in ("photons", "gauss", "photo_scales")
    }
    opts = TrainOptions(
        config="default",
        out=args.out,
        data=args.data,
        batch_size=args.batch_size,
        crop=args.crop,
        val_crops=args.val_crops,
        val_crop=128,
        grey=args.grey,
        correlated_noise=args.correlated_noise,
        crop_candidates=args.crop_candidates,
        dead_leaves=args.dead_leaves,
        **recipe,
    )
    return build_data(opts)


def run(args: argparse.Namespace, train_data, val_batches) -> HQSNet:
    """The phases of `args` on train_data (items as `pydeblur.datasets.BlurredCrops`') -> the model;
    val_batches: (blurred, psf, sharp) tuples."""
    out = Path(args.out)
    device = torch.device(args.device)
    config = HQSConfig(
        stages=args.stages,
        channels=args.channels,
        activation=args.activation,
        start=args.start,
        residual_input=args.residual_input,
        filters=args.filters,
        start_weight=args.start_weight,
    )
    model = HQSNet(config).to(device)
    plan = phases(args.stages, args.greedy_steps, args.joint_steps)
    phase, step, history = 0, 0, []
    optimizer = optimizer_for(model, args.lr)
    if args.init_from and not args.resume:
        loaded = load_stages(model, load_hqs(args.init_from), args.init_from)
        phase = loaded if args.greedy_steps > 0 else 0  # the loaded stages' greedy phases are done
    if args.resume:
        state = load_checkpoint(out / "last.pt")
        model.load_state_dict(state["model"])
        phase, step = int(state["phase"]), int(state["step"])
        history = json.loads(state["history"])
        optimizer.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
    started = time.perf_counter()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)
    loader = datasets.make_loader(
        train_data,
        args.batch_size,
        workers=args.workers,
        drop_last=True,
        sampler=datasets.EpochSampler(len(train_data), args.epoch_steps * args.batch_size, 0),
    )
    while phase < len(plan):
        upto, frozen, steps = plan[phase]
        loader.sampler.set_epoch(len(history))
        total, count, tick = 0.0, 0, time.perf_counter()
        for batch in loader:
            blurred, psf, sharp = (t.to(device) for t in unpack(batch))
            if args.misfit_noise > 0:
                blurred = add_misfit_noise(blurred, args.misfit_noise / 255)
            if args.white_noise > 0:
                blurred = add_white_noise(blurred, args.white_noise)
            sigma = estimate_noise_sigma(blurred)
            if args.psf_error > 0:
                psf = perturb_psf(psf, torch.rand(psf.shape[0]) * args.psf_error)
            progress = step / steps
            if args.time_schedule and args.max_minutes:
                elapsed = (time.perf_counter() - started) / (60 * args.max_minutes)
                progress = min(1.0, max(progress, elapsed))
            lr = args.lr * 0.5 * (1 + math.cos(math.pi * progress))
            for group, factor in zip(optimizer.param_groups, (1, WEIGHT_LR_FACTOR), strict=True):
                group["lr"] = lr * factor
            with autocast:
                output = model(blurred, psf, sigma, upto=upto, frozen=frozen)
            loss = psnr_loss(output, sharp)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            total, count, step = total + loss.item(), count + 1, step + 1
            if step >= steps:
                break
        row = {
            "phase": phase + 1,
            "stages": upto,
            "frozen": frozen,
            "step": step,
            "loss": total / max(1, count),
            "s_per_step": (time.perf_counter() - tick) / max(1, count),
            "weights": [round(s.log_weight.exp().item(), 5) for s in model.stages[:upto]],
            "slopes": [round(s.weight_slope.item(), 3) for s in model.stages[:upto]],
        }
        done = step >= steps
        out_of_time = args.max_minutes and time.perf_counter() - started > 60 * args.max_minutes
        if done or out_of_time:
            row["val_psnr"] = validate(model, val_batches, upto)
        if done:
            card = {
                "phase": phase + 1,
                "plan": plan,
                "history": history + [row],
                "args": vars(args),
            }
            save_hqs(model, out / f"phase{phase + 1}.safetensors", card, upto)
            phase, step = phase + 1, 0
            optimizer = optimizer_for(model, args.lr)  # fresh moments for the next phase
        history.append(row)
        print(json.dumps(row), flush=True)
        card = {
            "phase": min(phase + 1, len(plan)),
            "plan": plan,
            "history": history,
            "args": vars(args),
        }
        save_hqs(model, out / "last.safetensors", card, upto)
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "phase": phase,
            "step": step,
            "history": json.dumps(history),
            "rng": rng_state(),
        }
        atomic_save(state, out / "last.pt")
        if out_of_time:
            print(f"stopped after --max-minutes {args.max_minutes:g}", flush=True)
            break
    return model


if __name__ == "__main__":
    main()
