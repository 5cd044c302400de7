"""The unrolled stages (pydeblur.unrolled), their place in DeblurNet, restore and training."""

import dataclasses

import numpy as np
import pytest
import torch

from pydeblur.boundary import embed, pad_periodic
from pydeblur.cli.demo_cmd import make_example
from pydeblur.model import CONFIGS, DeblurNet, ModelConfig
from pydeblur.physics import circular_convolve, psf2otf
from pydeblur.restore import Deblurrer, deblur, estimate_noise
from pydeblur.unrolled import (
    RESIDUAL_SCALE,
    SIGMA_SCALE,
    StageDenoiser,
    UnrolledStages,
    data_step,
)
from pydeblur.weights_io import load_model, save_weights
from training.train import freeze

STAGED = dataclasses.replace(
    CONFIGS["tiny"], snr_db=(9.0, 13.0, 17.0, 21.0), stages=2, stage_channels=4, stage_levels=1
)


def staged_net(seed: int = 0) -> DeblurNet:
    """A tiny network with two stages, every weight random (the U-Nets' outputs included)."""
    torch.manual_seed(seed)
    net = DeblurNet(STAGED)
    with torch.no_grad():
        for name, parameter in net.named_parameters():
            if not name.endswith("log_strength"):
                parameter.normal_(0, 0.05)
    return net.eval()


@pytest.mark.parametrize("size", [(16, 16), (17, 30), (5, 9)])
def test_stage_denoiser_any_size_and_zero_at_start(size):
    net = StageDenoiser(channels=4, levels=2)
    out = net(torch.rand(2, 7, *size))
    assert out.shape == (2, 3, *size) and not out.any()


def test_data_step_keeps_what_explains_the_data_and_fits_the_data_inside():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 24, 20)
    otf = psf2otf(torch.rand(2, 1, 5, 5, dtype=torch.float64), (24, 20), half_spectrum=True)
    inside = torch.zeros(1, 1, 24, 20)
    inside[..., 5:19, 5:15] = 1
    explained = circular_convolve(x.double(), otf).float()
    assert torch.allclose(data_step(x, explained, inside, otf, 1e-4), x, atol=1e-4)
    # other data inside: a weak prior (small lam) fits it, a strong one (large lam) keeps x
    y = torch.rand_like(x)
    fitted = circular_convolve(data_step(x, y, inside, otf, 1e-6).double(), otf).float()
    assert (fitted - y)[..., 5:19, 5:15].abs().mean() < 0.1 * (explained - y)[
        ..., 5:19, 5:15
    ].abs().mean()
    assert torch.allclose(data_step(x, y, inside, otf, 1e8), x, atol=1e-5)


def test_stages_start_as_repeated_data_steps():
    """Zero U-Nets: the stages are data steps at strength s sigma^2, the network's estimate kept
    where lam is huge."""
    stages = UnrolledStages(count=2, channels=4, levels=1, strength=1e12)
    blurred = torch.rand(1, 3, 20, 20)
    estimate = torch.rand(1, 3, 20, 20)
    out = stages(estimate, blurred, torch.full((1, 1, 3, 3), 1 / 9), torch.tensor([0.05]))
    assert torch.allclose(out, estimate, atol=1e-4)


def test_the_u_net_sees_x_data_the_scaled_correction_and_the_noise_map():
    """The U-Net's inputs: x_data, RESIDUAL_SCALE (x_data - x) and sigma SIGMA_SCALE, on the canvas."""
    torch.manual_seed(0)
    stages = UnrolledStages(count=1, channels=4, levels=1, strength=2e4)
    estimate, blurred = torch.rand(1, 3, 20, 20), torch.rand(1, 3, 20, 20)
    psf, sigma = torch.full((1, 1, 3, 3), 1 / 9), torch.tensor([0.02])
    seen = []
    stages.stages[0].unet.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    stages(estimate, blurred, psf, sigma)
    canvas_y, padding = pad_periodic(blurred, (3, 3))
    x = pad_periodic(estimate, (3, 3))[0]
    inside = embed(torch.ones(1, 1, 20, 20), padding, canvas_y.shape[-2:], 0.0)
    otf = psf2otf(psf.double(), canvas_y.shape[-2:], half_spectrum=True)
    x_data = data_step(x, canvas_y, inside, otf, 2e4 * 0.02**2)
    (inputs,) = seen
    assert torch.allclose(inputs[:, :3], x_data, atol=1e-6)
    assert torch.allclose(inputs[:, 3:6], RESIDUAL_SCALE * (x_data - x), atol=1e-5)
    assert torch.allclose(inputs[:, 6], torch.full_like(inputs[:, 6], 0.02 * SIGMA_SCALE))
    assert (inputs[:, 3:6].abs().max()) > 1e-3  # the correction is not trivially zero here


def test_noise_map_and_strength_reach_the_stages():
    net = staged_net()
    _, blurred, psf = make_example()
    kernel = psf[None, None].float()
    blurred = blurred[..., :64, :64].float()
    with torch.no_grad():
        estimate = net.network(blurred, kernel)
        low = net.refine(estimate, blurred, kernel, torch.tensor([0.001]))
        high = net.refine(estimate, blurred, kernel, torch.tensor([0.05]))
        sharper = net.refine(estimate, blurred, kernel, torch.tensor([0.05]), strength=4.0)
    assert (low - high).abs().max() > 1e-3 and (sharper - high).abs().max() > 1e-3


def test_gradients_reach_the_stages_and_freeze_keeps_the_rest():
    net = staged_net().train()
    freeze(net, "last-stage")
    blurred, psf = torch.rand(2, 3, 32, 32), torch.full((2, 1, 5, 5), 1 / 25)
    net(blurred, psf).square().mean().backward()
    trained = {name for name, p in net.named_parameters() if p.grad is not None}
    assert trained and all(name.startswith("stages.stages.1.") for name in trained)
    assert any(name.endswith("log_strength") for name in trained)
    with pytest.raises(ValueError, match="needs a model with stages"):
        freeze(DeblurNet("tiny"), "stages")


def test_tiled_stages_agree_with_the_whole_image():
    net = staged_net()
    sharp, blurred, psf = make_example()
    image = blurred[0].permute(1, 2, 0).clamp(0, 1).numpy().astype(np.float32)
    psf = psf.numpy()
    whole = deblur(image, psf, model=net, device="cpu", tile=4096)
    tiled = deblur(image, psf, model=net, device="cpu", tile=200, overlap=96)
    assert np.abs(whole - tiled)[16:-16, 16:-16].max() < 2e-3


def test_noise_sigma_given_equals_the_estimate_it_replaces():
    net = staged_net()
    _, blurred, psf = make_example()
    image = blurred[0].permute(1, 2, 0).clamp(0, 1).numpy().astype(np.float32)
    psf = psf.numpy()
    sigma = estimate_noise(image)
    assert np.allclose(
        deblur(image, psf, model=net), deblur(image, psf, model=net, noise_sigma=sigma), atol=1e-5
    )
    assert not np.allclose(
        deblur(image, psf, model=net), deblur(image, psf, model=net, noise_sigma=0.2), atol=1e-3
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"noise_sigma": -0.1}, "noise_sigma must be None"),
        ({"noise_sigma": 2.0}, "noise_sigma must be None"),
        ({"noise_sigma": "0.1"}, "noise_sigma must be None"),
        ({"strength": 0}, "strength must be a positive number"),
        ({"strength": float("nan")}, "strength must be a positive number"),
    ],
)
def test_bad_noise_arguments_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Deblurrer(DeblurNet("tiny"), device="cpu")(
            np.zeros((16, 16), np.float32), np.ones((3, 3)), **kwargs
        )


def test_weights_with_stages_round_trip(tmp_path):
    net = staged_net()
    path = save_weights(net, tmp_path / "staged.safetensors", {"name": "staged"})
    loaded = load_model(path)
    assert loaded.config == STAGED
    for key, value in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_stage_config_checked():
    with pytest.raises(ValueError, match="replace the data-consistency"):
        ModelConfig(stages=1, data_consistency=1e4)
    with pytest.raises(ValueError, match="stages must be in"):
        ModelConfig(stages=11)
