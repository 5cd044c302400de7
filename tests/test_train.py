"""Training: a tiny run end to end, exact resume (also after a SIGKILL), init-from, and DDP (gloo)."""

import csv
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from pydeblur.model import CONFIGS, DeblurNet
from pydeblur.weights_io import load_model, read_card
from tests.test_distributed import free_port, set_torchrun_env
from training.checkpoints import init_from, load_checkpoint
from training.configs import RECIPES, TrainOptions
from training.train import LOSSES, lr_factor, parse_args, recipe_options, run
from training.train_data import add_misfit_noise, add_white_noise, perturb_psf


class SyntheticBlur(torch.utils.data.Dataset):
    """Seeded random images blurred by random 5x5 PSFs: (blurred [3, S, S], psf [1, 5, 5], sharp)."""

    def __init__(self, length=16, size=24):
        self.length, self.size = length, size

    def __len__(self):
        return self.length

    def __getitem__(self, index):
        g = torch.Generator().manual_seed(index)
        coarse = torch.rand(1, 3, self.size // 4, self.size // 4, generator=g)
        sharp = F.interpolate(coarse, size=(self.size, self.size), mode="nearest")[0]
        psf = torch.rand(1, 5, 5, generator=g)
        psf = psf / psf.sum()
        padded = F.pad(sharp[None], (2, 2, 2, 2), mode="replicate")
        blurred = F.conv2d(padded.transpose(0, 1), psf.flip(-1, -2)[None]).transpose(0, 1)[0]
        return blurred + 0.01 * torch.randn(blurred.shape, generator=g), psf, sharp


def val_batches():
    data = SyntheticBlur(length=2, size=24)
    items = [data[i] for i in range(2)]
    return [tuple(torch.stack(t) for t in zip(*items, strict=True))]


def options(tmp_path, **changes):
    base = TrainOptions(
        config="tiny",
        out=str(tmp_path / "run"),
        batch_size=4,
        epochs=2,
        steps_per_epoch=4,
        lr=3e-3,
        warmup_steps=2,
        model={"dropout": 0.1},  # dropout makes resume exactness depend on the saved RNG state
    )
    return dataclasses.replace(base, **changes)


def test_tiny_config_trains_and_writes_its_run_folder(tmp_path):
    opts = options(tmp_path)
    torch.manual_seed(opts.seed)
    start = DeblurNet(opts.model_config()).state_dict()
    model = run(opts, train_data=SyntheticBlur(), val_batches=val_batches())
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, start[k])]
    assert "conv_out.weight" in changed
    out = tmp_path / "run"
    for name in ("last.pt", "best.pt", "best.safetensors", "best.json", "log.csv", "curves.png"):
        assert (out / name).exists(), name
    rows = (out / "log.csv").read_text().splitlines()
    assert len(rows) == 3 and "val_psnr" in rows[0] and "samples_per_s" in rows[0]
    loaded = load_model(out / "last.safetensors")
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)
    assert not list(out.glob(".*"))  # no temporary file is left behind
    data = read_card(out / "best.safetensors")["data"]
    assert data["crop"] == opts.crop and data["psf_error"] == opts.psf_error
    assert data["photo_scales"] == list(opts.photo_scales)
    assert data["photons"] == list(opts.photons) and data["gauss"] == list(opts.gauss)


class CrashingBlur(SyntheticBlur):
    """Fails like a killed process when item `crash_at` (counted over the run) is drawn."""

    def __init__(self, crash_at, **kwargs):
        super().__init__(**kwargs)
        self.drawn, self.crash_at = 0, crash_at

    def __getitem__(self, index):
        self.drawn += 1
        if self.drawn == self.crash_at:
            raise KeyboardInterrupt("killed")
        return super().__getitem__(index)


def test_resume_continues_exactly_after_a_kill_mid_epoch(tmp_path):
    straight = run(options(tmp_path / "a"), train_data=SyntheticBlur(), val_batches=val_batches())
    # Killed during the second epoch (the first epoch draws 16 items): that epoch is lost, no more.
    with pytest.raises(KeyboardInterrupt):
        run(
            options(tmp_path / "b"), train_data=CrashingBlur(crash_at=22), val_batches=val_batches()
        )
    resumed = run(
        options(tmp_path / "b"), resume=True, train_data=SyntheticBlur(), val_batches=val_batches()
    )
    for key, value in straight.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key


def test_resume_without_checkpoint_fails(tmp_path):
    with pytest.raises(FileNotFoundError, match="--resume"):
        run(options(tmp_path), resume=True, train_data=SyntheticBlur())


def test_init_from_copies_the_tensors_whose_shapes_fit(tmp_path):
    source = DeblurNet("tiny")
    tensors = {k: v.contiguous() for k, v in source.state_dict().items()}
    tensors["conv_in.weight"] = torch.zeros(1, 2, 3, 3)  # does not fit
    save_file(tensors, str(tmp_path / "w.safetensors"))
    target = DeblurNet("tiny")
    copied, total = init_from(target, str(tmp_path / "w.safetensors"))
    assert copied == total - 1
    torch.testing.assert_close(target.conv_out.weight, source.conv_out.weight)
    assert not torch.equal(target.conv_in.weight, source.conv_in.weight)


def test_lr_schedule_warms_up_then_decays_to_the_floor():
    opts = TrainOptions(epochs=2, steps_per_epoch=50, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_factor(0, opts) == pytest.approx(0.1)
    assert lr_factor(9, opts) == pytest.approx(1.0)
    assert lr_factor(10, opts) == pytest.approx(1.0)
    assert lr_factor(100, opts) == pytest.approx(0.1)
    assert lr_factor(55, opts) < lr_factor(30, opts)


def test_command_line_takes_the_recipe_then_overrides():
    opts, args = parse_args(
        [
            "--config",
            "default",
            "--lr",
            "0.01",
            "--photons",
            "100",
            "200",
            "--model-set",
            "learn_nsr=true",
            "--bf16",
        ]
    )
    assert opts.config == "default" and opts.lr == 0.01 and opts.photons == (100.0, 200.0)
    assert opts.model == {"learn_nsr": True} and opts.bf16 is True and opts.out == "runs/default"
    assert opts.model_config().learn_nsr
    assert opts.batch_size == RECIPES["default"]["batch_size"] and opts.loss == "psnr"
    assert opts.photo_scales == RECIPES["default"]["photo_scales"]


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_every_recipe_names_real_options(config):
    opts = TrainOptions(config=config, **recipe_options(config))
    assert opts.loss in LOSSES and opts.model_config() == CONFIGS[config]


def test_a_recipe_with_an_unknown_option_is_refused(monkeypatch):
    monkeypatch.setitem(RECIPES, "tiny", {"learning_rate": 0.1})
    with pytest.raises(ValueError, match="learning_rate"):
        parse_args(["--config", "tiny"])


def _ddp_worker(rank, world, port, out):
    set_torchrun_env(rank, world, port)
    torch.set_num_threads(1)
    opts = TrainOptions(
        config="tiny",
        out=os.path.join(out, "run"),
        batch_size=2,
        epochs=1,
        steps_per_epoch=3,
        lr=1e-2,
        seed=rank,
    )
    model = run(opts, train_data=SyntheticBlur(length=12), val_batches=val_batches())
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        os.path.join(out, f"rank{rank}.safetensors"),
    )


def test_two_gloo_processes_hold_identical_weights(tmp_path):
    mp.start_processes(
        _ddp_worker,
        args=(2, free_port(), str(tmp_path)),
        nprocs=2,
        join=True,
        start_method="spawn",
    )
    rank0 = load_file(tmp_path / "rank0.safetensors")
    rank1 = load_file(tmp_path / "rank1.safetensors")
    untrained = DeblurNet("tiny").state_dict()
    assert not torch.equal(rank0["conv_out.weight"], untrained["conv_out.weight"])
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
    assert (tmp_path / "run" / "last.pt").exists()  # rank 0 checkpoints


def test_loss_switches_from_l2_to_ssim_at_the_given_epoch():
    from pydeblur.ops import ssim_loss
    from training.train import loss_fn

    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, 3, 24, 24, generator=g), torch.rand(2, 3, 24, 24, generator=g)
    opts = TrainOptions(loss="l2-then-ssim", ssim_from_epoch=3)
    torch.testing.assert_close(loss_fn(x, y, opts, 2), (x - y).square().mean())
    torch.testing.assert_close(loss_fn(x, y, opts, 3), ssim_loss(x, y))
    per_image = (x - y).square().flatten(1).mean(dim=1)
    torch.testing.assert_close(
        loss_fn(x, y, TrainOptions(loss="psnr"), 0), torch.log10(per_image + 1e-8).mean()
    )
    mixed = loss_fn(x, y, TrainOptions(loss="mix", ssim_weight=0.25), 0)
    torch.testing.assert_close(mixed, 0.75 * (x - y).square().mean() + 0.25 * ssim_loss(x, y))
    with pytest.raises(ValueError, match="loss"):
        run(TrainOptions(loss="l1"), train_data=SyntheticBlur())


def test_perturbed_psf_is_a_nearby_valid_kernel():
    torch.manual_seed(0)
    psf = torch.zeros(3, 1, 15, 15)
    psf[:, :, 7, 4:11] = 1 / 7  # a horizontal line
    assert perturb_psf(psf, 0.0) is psf
    wrong = perturb_psf(psf, 0.3)
    assert wrong.shape == psf.shape and (wrong >= 0).all()
    torch.testing.assert_close(wrong.sum(dim=(-2, -1)), torch.ones(3, 1))
    error = (wrong - psf).abs().sum(dim=(-2, -1))
    assert (error > 0.05).all() and (error < 1.0).all()
    assert not torch.equal(wrong[0], wrong[1])  # each image gets its own error
    mixed = perturb_psf(psf, torch.tensor([0.0, 0.3, 0.0]))  # one strength per image
    torch.testing.assert_close(mixed[0], psf[0], atol=1e-6, rtol=0)
    assert (mixed[1] - psf[1]).abs().sum() > 0.05


def test_misfit_noise_is_correlated_and_mostly_unseen_by_the_noise_estimator():
    from pydeblur.noise import estimate_noise_sigma

    torch.manual_seed(0)
    grey = torch.full((1, 1, 128, 128), 0.5).expand(4, 3, -1, -1).contiguous()
    colour = torch.tensor([0.4, 0.5, 0.6]).view(1, 3, 1, 1).expand(4, -1, 128, 128).contiguous()
    assert torch.equal(add_misfit_noise(grey, 0.01, share=0.0), grey)
    for clean in (grey, colour):
        noisy = add_misfit_noise(clean, 0.01, share=1.0)
        field = noisy - clean
        rms = field.square().mean(dim=(1, 2, 3)).sqrt()
        assert (rms > 0).all() and (rms < 0.012).all()  # U(0, 0.01) per image, one draw each
        lag1 = (field[..., 1:] * field[..., :-1]).mean() / field.square().mean()
        assert lag1 > 0.3  # white noise: 0
        assert (estimate_noise_sigma(noisy) < 0.7 * rms).all()
    assert not torch.equal(field[:, 0], field[:, 1])  # colour: one field per channel
    grey_noisy = add_misfit_noise(grey, 0.01, share=1.0)
    assert torch.equal(grey_noisy[:, 0], grey_noisy[:, 2])  # a grey image stays grey


def test_white_noise_is_white_at_log_uniform_levels_and_seen_by_the_noise_estimator():
    from pydeblur.noise import estimate_noise_sigma

    torch.manual_seed(0)
    grey = torch.full((1, 1, 128, 128), 0.5).expand(256, 3, -1, -1).contiguous()
    assert torch.equal(add_white_noise(grey, share=0.0), grey)
    noisy = add_white_noise(grey, share=1.0)
    assert torch.equal(noisy[:, 0], noisy[:, 2])  # a grey image stays grey
    field = noisy - grey
    sigma = field.std(dim=(1, 2, 3))
    assert sigma.min() > 0.0019 and sigma.max() < 0.052
    # log-uniform over 0.002..0.05: about half the images below the geometric mean, 0.01
    assert 96 < int((sigma < 0.01).sum()) < 160
    lag1 = (field[..., 1:] * field[..., :-1]).mean() / field.square().mean()
    assert abs(float(lag1)) < 0.02
    torch.testing.assert_close(estimate_noise_sigma(noisy), sigma, rtol=0.08, atol=0)
    colour = torch.rand(8, 3, 64, 64)
    coloured = add_white_noise(colour, share=1.0) - colour
    assert not torch.equal(coloured[:, 0], coloured[:, 1])  # colour: one field per channel


def test_scaled_photos_are_resized_once_and_cached(tmp_path):
    import numpy as np

    from pydeblur.io import read_image, write_image
    from training.train_data import scaled_photos

    source = tmp_path / "photo.png"
    write_image(source, np.random.default_rng(0).random((40, 60, 3)))
    assert scaled_photos([str(source)], 1.0, tmp_path / "x1") == [str(source)]
    (half,) = scaled_photos([str(source)], 0.5, tmp_path / "x0.5")
    assert read_image(half)[0].shape == (20, 30, 3)
    stamp = os.path.getmtime(half)
    assert (
        scaled_photos([str(source)], 0.5, tmp_path / "x0.5") == [half]
        and os.path.getmtime(half) == stamp
    )
    with pytest.raises(ValueError, match="photo_scales"):
        scaled_photos([str(source)], 1.5, tmp_path / "x")
    opts, _ = parse_args(["--config", "default", "--photo-scales", "1", "0.5"])
    assert opts.photo_scales == (1.0, 0.5)


# ---------------------------------------------------------------- kills, and what they leave

ROOT = Path(__file__).resolve().parents[1]
SCRIPTED_PSNR = {1: 20.0, 2: 21.0, 3: 20.5, 4: 20.0}  # epoch 3: worse than the best, better than 1
CHILD_ARGS = (
    *("--config", "tiny", "--epochs", "4", "--batch-size", "4", "--steps-per-epoch", "4"),
    *("--lr", "0.003", "--warmup-steps", "2", "--threads", "1", "--workers", "0"),
    *("--model-set", "dropout=0.1"),
)
ITEMS_PER_EPOCH = 16  # batch size 4 x 4 steps


def _stop_until_killed(marker):
    Path(marker).touch()
    while True:
        time.sleep(1)


class StoppingBlur(SyntheticBlur):
    """Stops (until killed) when item `stop_at` of the run is drawn, after creating `marker`."""

    def __init__(self, stop_at, marker, **kwargs):
        super().__init__(**kwargs)
        self.drawn, self.stop_at, self.marker = 0, stop_at, marker

    def __getitem__(self, index):
        self.drawn += 1
        if self.drawn == self.stop_at:
            _stop_until_killed(self.marker)
        return super().__getitem__(index)


def _train_child(argv):
    """training.train.main(argv[2:]) on SyntheticBlur, validation PSNR scripted by SCRIPTED_PSNR.

    argv[0]: a marker file, created when the run stops to wait for its SIGKILL; argv[1]: where it
    stops: "epoch:N" (the first item drawn in epoch N), "log:N" (the log write of epoch N), "none".
    """
    import training.train as train

    marker, (where, _, epoch) = argv[0], argv[1].partition(":")
    data = SyntheticBlur()
    if where == "epoch":
        data = StoppingBlur((int(epoch) - 1) * ITEMS_PER_EPOCH + 1, marker)
    if where == "log":
        write_log = train.write_log

        def stopping_write_log(out, history):
            if len(history) == int(epoch):
                _stop_until_killed(marker)
            write_log(out, history)

        train.write_log = stopping_write_log
    train.build_data = lambda opts: (data, val_batches())
    validate = train.Trainer.validate
    train.Trainer.validate = lambda self, batches: {
        **validate(self, batches),
        "val_psnr": SCRIPTED_PSNR[self.epoch],
    }
    train.main(argv[2:])


def _train_in_child(tmp_path, stop="none", *args):
    """Run _train_child in a subprocess on tmp_path / "run"; with a stop, SIGKILL it there."""
    marker = tmp_path / "stopped"
    marker.unlink(missing_ok=True)
    command = "import sys; from tests.test_train import _train_child; _train_child(sys.argv[1:])"
    argv = [str(marker), stop, *CHILD_ARGS, "--out", str(tmp_path / "run"), *args]
    with open(tmp_path / "child.log", "w") as log:
        child = subprocess.Popen(
            [sys.executable, "-c", command, *argv],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        try:
            deadline = time.monotonic() + 300
            while stop != "none" and not marker.exists() and child.poll() is None:
                assert time.monotonic() < deadline, "the child did not reach its stop"
                time.sleep(0.05)
            if stop != "none" and marker.exists():
                child.send_signal(signal.SIGKILL)
            code = child.wait(timeout=300)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    expected = -signal.SIGKILL if stop != "none" else 0
    assert code == expected, (tmp_path / "child.log").read_text()


def _history(checkpoint):
    return json.loads(checkpoint["history"])


def test_a_sigkill_between_epochs_and_resume_keep_the_best_checkpoint(tmp_path):
    out = tmp_path / "run"
    _train_in_child(tmp_path, "epoch:3")  # killed in epoch 3, after epoch 2 (the best) was saved
    killed, best = load_checkpoint(out / "last.pt"), load_checkpoint(out / "best.pt")
    assert killed["epoch"] == 2 and best["epoch"] == 2
    # what --resume continues from knows the best score it has: best.pt's validation PSNR
    assert killed["best_psnr"] == best["best_psnr"] == _history(best)[-1]["val_psnr"] == 21.0

    _train_in_child(tmp_path, "none", "--resume")
    last, best = load_checkpoint(out / "last.pt"), load_checkpoint(out / "best.pt")
    assert last["epoch"] == 4
    assert [row["val_psnr"] for row in _history(last)] == [SCRIPTED_PSNR[e] for e in range(1, 5)]
    # best.pt is still epoch 2's (epoch 3, at 20.5, must not replace it), and last.pt says so
    assert best["epoch"] == 2 and _history(best)[-1]["val_psnr"] == 21.0
    assert last["best_psnr"] == best["best_psnr"] == 21.0
    assert read_card(out / "best.safetensors")["metrics"]["val_psnr"] == 21.0
    weights = load_file(out / "best.safetensors")
    for key, value in best["model"].items():
        assert torch.equal(weights[key], value.float()), key


def test_a_sigkill_in_the_last_epochs_log_write_is_repaired_by_resume(tmp_path):
    out = tmp_path / "run"
    _train_in_child(tmp_path, "log:4")  # killed while writing the log of the last epoch
    _train_in_child(tmp_path, "none", "--resume")
    history = _history(load_checkpoint(out / "last.pt"))
    assert [row["epoch"] for row in history] == [1, 2, 3, 4]
    with open(out / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [{k: float(v) for k, v in row.items()} for row in rows] == history
    assert (out / "curves.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_resume_rewrites_a_short_log_from_the_checkpoint(tmp_path):
    opts, out = options(tmp_path), tmp_path / "run"
    run(opts, train_data=SyntheticBlur(), val_batches=val_batches())
    whole = (out / "log.csv").read_text()
    (out / "log.csv").write_text("".join(whole.splitlines(keepends=True)[:2]))  # epoch 2 lost
    (out / "curves.png").unlink()
    # nothing left to train: resume only writes the log again
    run(opts, resume=True, train_data=SyntheticBlur(), val_batches=val_batches())
    assert (out / "log.csv").read_text() == whole
    assert (out / "curves.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def _dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_run_removes_what_killed_writers_left_and_writes_whole_files(tmp_path):
    import matplotlib.image

    out, dead, live = tmp_path / "run", _dead_pid(), os.getppid()
    stale = [
        f".last.pt.{dead}.pydeblur-partial",
        f".log.csv.{dead}.pydeblur-partial",
        ".last.pt.tmp",  # the names train.py and pydeblur.model wrote before pydeblur.atomic
        ".log.csv.tmp",
        ".curves.png.tmp.png",
        f".best.safetensors.tmp{dead}",
        f".best.json.tmp{live}",  # no writer uses the old names now, whatever the process
    ]
    kept = [f".notes.txt.{live}.pydeblur-partial"]  # a live writer's
    (out / "photos_x0.5").mkdir(parents=True)
    for name in [*stale, *kept, f"photos_x0.5/.a.png.{dead}.pydeblur-partial"]:
        (out / name).write_bytes(b"half a file")
    opts = options(tmp_path)
    model = run(opts, train_data=SyntheticBlur(), val_batches=val_batches())
    assert sorted(p.name for p in out.glob(".*")) == kept
    assert not list((out / "photos_x0.5").iterdir())
    last = load_checkpoint(out / "last.pt")
    assert last["epoch"] == 2 and load_checkpoint(out / "best.pt")["epoch"] >= 1
    for key, value in model.state_dict().items():
        assert torch.equal(last["model"][key], value), key
        assert torch.equal(load_model(out / "last.safetensors").state_dict()[key], value), key
    assert len((out / "log.csv").read_text().splitlines()) == 3
    assert matplotlib.image.imread(out / "curves.png").ndim == 3

    (out / f".best.pt.{dead}.pydeblur-partial").write_bytes(b"half a file")  # resume cleans too
    more = dataclasses.replace(opts, epochs=3)
    run(more, resume=True, train_data=SyntheticBlur(), val_batches=val_batches())
    assert sorted(p.name for p in out.glob(".*")) == kept
    assert load_checkpoint(out / "last.pt")["epoch"] == 3


def test_channel_noise_flags_reach_the_training_crops(tmp_path):
    import numpy as np

    from pydeblur.io import write_image
    from training.train_data import build_data

    rng = np.random.default_rng(0)
    for i in range(10):
        write_image(tmp_path / f"p{i}.png", rng.random((64, 64, 3)).astype(np.float32))
    opts, _ = parse_args(
        ["--data", str(tmp_path), "--out", str(tmp_path / "run"), "--grey", "0.25"]
        + ["--correlated-noise", "0.5", "--crop", "16", "--val-crop", "16"]
    )
    train, _ = build_data(opts)
    assert (train.grey, train.correlated) == (0.25, 0.5)
    assert parse_args([])[0].grey == 0 and parse_args([])[0].correlated_noise == 0
