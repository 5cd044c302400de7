"""The HQS network (pydeblur.hqs) and its training script (training.train_hqs)."""

import argparse

import pytest
import torch
from torch.nn import functional as F

from pydeblur.boundary import embed, pad_periodic
from pydeblur.hqs import HQSConfig, HQSNet, HQSStage, dct_filters, elu
from pydeblur.hqs_io import load_hqs
from pydeblur.physics import circular_convolve, psf2otf
from tests.test_train import SyntheticBlur, val_batches
from training.train_hqs import load_stages, phases, run


def _inputs(batch=2, size=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    blurred = torch.rand(batch, 3, size, size, generator=g)
    psf = torch.rand(batch, 1, 5, 5, generator=g)
    return blurred, psf / psf.sum(dim=(-2, -1), keepdim=True)


def test_the_fast_elu_matches_torchs_values_and_gradients():
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64) * 3
    x[0, 0, 0, :3] = torch.tensor([0.0, -50.0, 50.0])
    assert torch.allclose(elu(x), F.elu(x), atol=1e-12)
    assert torch.autograd.gradcheck(elu, x.clone().requires_grad_())
    grad = torch.randn_like(x)
    mine, theirs = (x.clone().requires_grad_() for _ in range(2))
    elu(mine).backward(grad)
    F.elu(theirs).backward(grad)
    assert torch.allclose(mine.grad, theirs.grad, atol=1e-12)
    half = x.bfloat16()
    assert torch.allclose(elu(half).float(), F.elu(half).float(), atol=2**-8, rtol=0)


def test_the_dct_filters_are_orthonormal_and_of_zero_mean():
    filters = dct_filters(5, 24).flatten(1).double()
    assert torch.allclose(filters @ filters.T, torch.eye(24, dtype=torch.float64), atol=1e-6)
    assert filters.sum(dim=1).abs().max() < 1e-6


def test_a_stage_whose_cnn_is_zero_is_the_proximal_step():
    """X = (lam K* Y + G X0) / (lam |K|^2 + G) minimises lam ||k u - y||^2 + sum_i ||f_i (u - x0)||^2:
    the objective's gradient vanishes there (and not at x0)."""
    net = HQSNet(HQSConfig(stages=1, channels=4, layers=2)).double()
    stage = net.stages[0]
    x0, y = (torch.rand(1, 3, 16, 16, dtype=torch.float64) for _ in range(2))
    psf = torch.rand(1, 1, 3, 3, dtype=torch.float64)
    otf = psf2otf(psf / psf.sum(), (16, 16), half_spectrum=True)
    sigma = torch.full((1, 1, 1, 1), 0.05, dtype=torch.float64)
    inside = torch.ones(1, 1, 16, 16, dtype=torch.float64)
    noise = torch.zeros(1, 1, 16, 16, dtype=torch.float64)
    y_spectrum = otf.conj() * torch.fft.rfft2(y)
    solved = HQSNet._stage(stage, False, x0, y, y_spectrum, otf, inside, sigma, noise).double()
    lam = stage.log_weight.exp().item() / 0.05**2
    filters = stage.filters.detach().double()[:, None]

    def gradient(u):
        u = u.detach().clone().requires_grad_(True)
        data = lam * (circular_convolve(u, otf) - y).pow(2).sum()
        diff = torch.nn.functional.pad(u - x0, (2, 2, 2, 2), mode="circular")
        prior = torch.nn.functional.conv2d(diff.transpose(0, 1), filters).pow(2).sum()
        (data + prior).backward()
        return u.grad

    assert gradient(solved).abs().max() < 1e-6 * gradient(x0).abs().max()


def test_the_network_keeps_shapes_and_every_part_learns():
    blurred, psf = _inputs()
    net = HQSNet(HQSConfig(stages=2, channels=8, layers=3))
    for stage in net.stages:  # the last convolutions start at zero: give them something
        torch.nn.init.normal_(stage.cnn.convs[-1].weight, std=0.01)
    out = net(blurred, psf, torch.tensor([0.01, 0.02]))
    assert out.shape == blurred.shape and out.dtype == blurred.dtype
    out.square().mean().backward()
    for name, parameter in net.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_greedy_runs_leave_the_frozen_stages_without_gradients():
    blurred, psf = _inputs()
    net = HQSNet(HQSConfig(stages=3, channels=4, layers=2))
    net(blurred, psf, upto=2, frozen=1).sum().backward()
    assert all(p.grad is None for p in net.stages[0].parameters())
    assert all(p.grad is not None for p in net.stages[1].parameters())
    assert all(p.grad is None for p in net.stages[2].parameters())


def test_the_data_outside_the_image_do_not_move_an_adjusted_stage():
    """Boundary adjustment (from stage 2 on, or from the first after a start model): the padding's data
    are the estimate blurred,
    so changing the blurred image's periodic extension changes nothing (checked by hand-built
    canvases through the stage directly)."""
    net = HQSNet(HQSConfig(stages=2, channels=4, layers=2)).double()
    blurred, psf = _inputs(batch=1)
    canvas, padding = pad_periodic(blurred.double(), (5, 5))
    shape = canvas.shape[-2:]
    inside = embed(torch.ones(1, 1, 24, 24, dtype=torch.float64), padding, shape, 0.0)
    otf = psf2otf(psf.double(), shape, half_spectrum=True)
    sigma = torch.full((1, 1, 1, 1), 0.02, dtype=torch.float64)
    noise = torch.zeros(1, 1, *shape, dtype=torch.float64)
    other = torch.where(inside > 0, canvas, torch.rand_like(canvas))
    results = [
        HQSNet._stage(
            net.stages[1],
            True,
            canvas,
            y,
            otf.conj() * torch.fft.rfft2(y),
            otf,
            inside,
            sigma,
            noise,
        )
        for y in (canvas, other)
    ]
    assert torch.allclose(*results, atol=1e-5)


def test_config_refuses_impossible_shapes():
    with pytest.raises(ValueError, match="filters"):
        HQSConfig(filters=26, filter_size=5)
    with pytest.raises(ValueError, match="start_weight"):
        HQSConfig(start_weight=0.0)
    with pytest.raises(ValueError, match="stages"):
        HQSConfig(stages=0)
    with pytest.raises(ValueError, match="unknown HQSConfig fields"):
        HQSConfig.from_dict({"stages": 2, "width": 3})


def test_the_data_weights_slope_trusts_clean_images_less():
    stage = HQSStage(HQSConfig(channels=4, layers=2))
    sigma = torch.tensor([0.04, 0.01, 0.0025], dtype=torch.float64).view(3, 1, 1, 1)
    flat = (stage.data_weight(sigma) * sigma**2).flatten()
    # b = 0: in proportion to 1 / sigma^2 at every level
    torch.testing.assert_close(flat, torch.full((3,), 0.01, dtype=torch.float64))
    with torch.no_grad():
        stage.weight_slope.fill_(1.0)
    scaled = (stage.data_weight(sigma) * sigma**2).flatten()
    torch.testing.assert_close(scaled, torch.tensor([0.04, 0.01, 0.0025], dtype=torch.float64))


def test_the_phases_go_stage_by_stage_then_jointly():
    assert phases(3, 5, 7) == [(1, 0, 5), (2, 1, 5), (3, 2, 5), (3, 0, 7)]
    assert phases(2, 0, 7) == [(2, 0, 7)]


def test_resume_takes_the_runs_options_but_for_the_time_and_a_longer_joint_phase(tmp_path):
    import json

    from training.train_hqs import parse_args

    fresh = parse_args(["--out", str(tmp_path), "--stages", "3"])
    assert fresh.joint_steps == 3000 and fresh.stages == 3
    # a run written before later options existed: they take their defaults
    (tmp_path / "args.json").write_text(json.dumps({"out": str(tmp_path), "stages": 3, "lr": 0.01}))
    resumed = parse_args(
        ["--out", str(tmp_path), "--resume", "--stages", "9", "--max-minutes", "5"]
    )
    assert (resumed.stages, resumed.lr, resumed.max_minutes) == (3, 0.01, 5.0)
    assert resumed.joint_steps == 3000 and resumed.activation == "elu" and resumed.resume
    longer = parse_args(["--out", str(tmp_path), "--resume", "--joint-steps", "5000"])
    assert longer.joint_steps == 5000
    with pytest.raises(SystemExit):
        parse_args(["--out", str(tmp_path / "none"), "--resume"])


def _args(tmp_path, **changes):
    from training.train_hqs import parse_args

    values = dict(
        stages=2,
        channels=4,
        greedy_steps=2,
        joint_steps=3,
        epoch_steps=2,
        batch_size=2,
        psf_error=0.1,
        workers=0,
    )
    defaults = vars(parse_args(["--out", str(tmp_path / "run")]))
    return argparse.Namespace(**{**defaults, **values, **changes})


def test_a_run_trains_every_phase_and_resume_continues_it(tmp_path):
    import json

    args = _args(tmp_path)
    (tmp_path / "run").mkdir()
    model = run(args, SyntheticBlur(length=16), val_batches())
    out = tmp_path / "run"
    for phase in (1, 2, 3):
        card = json.loads((out / f"phase{phase}.json").read_text())
        assert card["format"] == "pydeblur.HQSNet/1" and "val_psnr" in card["history"][-1]
    assert load_hqs(out / "phase1.safetensors").config.stages == 1  # only the stages trained
    final = load_hqs(out / "phase3.safetensors")
    assert all(
        torch.equal(a, b)
        for a, b in zip(final.state_dict().values(), model.state_dict().values(), strict=True)
    )
    # A run can start from another's weights.
    again = run(
        _args(
            tmp_path,
            out=str(out),
            init_from=str(out / "phase3.safetensors"),
            greedy_steps=0,
            lr=0.0,
        ),
        SyntheticBlur(length=16),
        val_batches(),
    )
    assert all(
        torch.equal(a, b)
        for a, b in zip(again.state_dict().values(), model.state_dict().values(), strict=True)
    )
    # A run stopped after its first epoch continues from it.
    stopped = _args(tmp_path, out=str(tmp_path / "stopped"), max_minutes=1e-9)
    (tmp_path / "stopped").mkdir()
    run(stopped, SyntheticBlur(length=16), val_batches())
    state = torch.load(tmp_path / "stopped" / "last.pt", weights_only=True)
    assert (state["phase"], state["step"]) == (1, 0)  # its first phase done
    run(
        _args(tmp_path, out=str(tmp_path / "stopped"), resume=True),
        SyntheticBlur(length=16),
        val_batches(),
    )
    assert (tmp_path / "stopped" / "phase3.safetensors").exists()


def test_a_run_grows_a_trained_model_by_new_stages_from_their_greedy_phase(tmp_path):
    import json

    for name in ("small", "grown"):
        (tmp_path / name).mkdir()
    small = run(
        _args(tmp_path, out=str(tmp_path / "small")), SyntheticBlur(length=16), val_batches()
    )
    grown_args = _args(
        tmp_path,
        out=str(tmp_path / "grown"),
        stages=3,
        init_from=str(tmp_path / "small" / "phase3.safetensors"),
    )
    grown = run(grown_args, SyntheticBlur(length=16), val_batches())
    assert grown.config.stages == 3
    phases_run = sorted(p.name for p in (tmp_path / "grown").glob("phase*.safetensors"))
    assert phases_run == ["phase3.safetensors", "phase4.safetensors"]  # stages 1-2 not retrained
    greedy = json.loads((tmp_path / "grown" / "phase3.json").read_text())["history"]
    assert (greedy[0]["stages"], greedy[0]["frozen"]) == (3, 2)
    # A new stage starts near the identity: growing keeps what the model does.
    blurred, psf, _ = val_batches()[0]
    started = HQSNet(HQSConfig(stages=3, channels=4))
    assert load_stages(started, small) == 2
    assert torch.allclose(started(blurred, psf), small(blurred, psf), atol=0.005)  # 1e-2: 0.07
    # Stages it cannot hold, or another shape, are refused naming what differs.
    with pytest.raises(ValueError, match=r"channels 4 \(not 8\)"):
        load_stages(HQSNet(HQSConfig(stages=2, channels=8)), small, "small")
    with pytest.raises(ValueError, match=r"2 stages \(more than 1\)"):
        load_stages(HQSNet(HQSConfig(stages=1, channels=4)), small, "small")


def test_a_started_network_begins_as_its_start_model():
    """With start="robust", x_0 is the shipped robust model's output; stages whose data weight is
    negligible and whose CNN is zero leave it as it is (but for its mean). The CNNs told the data term's gradient
    (residual_input) take 3 more channels."""
    from pydeblur.weights_io import load_model

    net = HQSNet(HQSConfig(stages=1, channels=4, layers=2, start="robust", residual_input=True))
    assert net.stages[0].cnn.convs[0].in_channels == 7
    assert not any(p.requires_grad for p in net.start.parameters())
    with torch.no_grad():
        net.stages[0].log_weight.fill_(-40.0)
    blurred, psf = _inputs(batch=1, size=32)
    sigma = torch.tensor([0.01])
    with torch.no_grad():
        robust = load_model("robust")
        expected = robust.refine(robust.network(blurred, psf), blurred, psf, sigma)
        difference = net.train()(blurred, psf, sigma) - expected
    # up to each channel's mean: no filter has one, so the data alone set it, however weak
    assert (difference - difference.mean(dim=(-2, -1), keepdim=True)).abs().max() < 1e-4
    assert not net.start.training


def test_with_the_whole_basis_a_stage_starts_as_the_consistency_step():
    """25 filters of 5x5 make G flat (25 FILTER_SCALE^2), so with start_weight = that / strength the
    zero-CNN stage is `pydeblur.consistency.data_consistency` at that strength (boundary adjusted)."""
    from pydeblur.consistency import data_consistency
    from pydeblur.hqs import FILTER_SCALE

    strength = 1e4
    config = HQSConfig(
        stages=1, channels=4, layers=2, filters=25, start_weight=25 * FILTER_SCALE**2 / strength
    )
    net = HQSNet(config)
    blurred, psf = _inputs(batch=1, size=32)
    estimate, sigma = torch.rand(1, 3, 32, 32), torch.tensor([0.01])
    canvas, padding = pad_periodic(blurred.double(), (5, 5))
    shape = canvas.shape[-2:]
    x = pad_periodic(estimate.double(), (5, 5))[0]
    inside = embed(torch.ones(1, 1, 32, 32, dtype=torch.float64), padding, shape, 0.0)
    otf = psf2otf(psf.double(), shape, half_spectrum=True)
    noise = torch.zeros(1, 1, *shape)
    with torch.no_grad():
        solved = HQSNet._stage(
            net.stages[0],
            True,
            x,
            canvas,
            otf.conj() * torch.fft.rfft2(canvas),
            otf,
            inside,
            sigma.double().reshape(1, 1, 1, 1),
            noise,
        )
    from pydeblur.boundary import crop

    expected = data_consistency(estimate, blurred, psf, strength, sigma, adjust_boundary=True)
    assert torch.allclose(crop(solved, padding), expected, atol=1e-5)
