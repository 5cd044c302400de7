"""The whole network: inference time per 256x256 image and training throughput, per named config.

    pytest benchmarks/test_bench_model.py --benchmark-only --benchmark-group-by=group

Inference (batch 1, 3x256x256, features + network, no grad) against the same network whose Wiener
bank is plain PyTorch (torch.fft, batched), and against the paper's 0.347 s per image (its GPU, in
extra_info). Training: one Adam step (features, forward, L2, backward) on 4 crops of 128x128;
extra_info["samples_per_s"] is 4 / the mean step time.
"""

import pytest
import torch

import pydeblur.ops
from pydeblur.model import DeblurNet
from tests.helpers import cpu_and_cuda

PAPER_SECONDS_PER_IMAGE = 0.347
CONFIG_NAMES = ("tiny", "default", "small", "paper")


def plain_wiener_bank(y, psf, snr_db=None, nsr=None):
    """The Wiener bank in plain PyTorch: rfft2, broadcast complex arithmetic, one irfft2."""
    height, width = y.shape[-2:]
    kh, kw = psf.shape[-2:]
    padded = torch.zeros(*psf.shape[:-2], height, width, dtype=y.dtype, device=y.device)
    padded[..., :kh, :kw] = psf
    otf = torch.fft.rfft2(torch.roll(padded, (-(kh // 2), -(kw // 2)), (-2, -1)))[:, None]
    spectrum = torch.fft.rfft2(y)[:, None]
    filters = otf.conj() / (otf.abs().square() + nsr.to(y.dtype).view(1, -1, 1, 1, 1))
    return torch.fft.irfft2(filters * spectrum, s=(height, width))


def inputs(batch, size, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    blurred = torch.rand(batch, 3, size, size, generator=g)
    psf = torch.rand(batch, 1, 34, 34, generator=g)
    return blurred.to(device), (psf / psf.sum(dim=(-2, -1), keepdim=True)).to(device)


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def time_inference(benchmark, model, blurred, psf, device, rounds):
    """model(blurred, psf) without gradients, after one warm-up call (FFT plans, allocator), against
    the paper's time per image."""
    benchmark.extra_info["paper_seconds_per_image"] = PAPER_SECONDS_PER_IMAGE

    @torch.no_grad()
    def run():
        model(blurred, psf)
        sync(device)

    run()
    benchmark.pedantic(run, rounds=rounds, iterations=1)


@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize("wiener", ["pydeblur_op", "plain_pytorch"])
@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_inference_per_image(benchmark, name, wiener, device, monkeypatch):
    if wiener == "plain_pytorch":
        monkeypatch.setattr(pydeblur.ops, "wiener_bank", plain_wiener_bank)
    model = DeblurNet(name).to(device).eval()
    blurred, psf = inputs(1, 256, device)
    benchmark.group = f"inference 1x3x256x256 {name} {device}"
    time_inference(
        benchmark, model, blurred, psf, device, 2 if name == "paper" and device == "cpu" else 5
    )


@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_training_step(benchmark, name, device):
    torch.manual_seed(0)
    model = DeblurNet(name).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    blurred, psf = inputs(4, 128, device)
    sharp = blurred.clone()
    benchmark.group = f"training step 4x3x128x128 {name} {device}"

    def step():
        loss = (model(blurred, psf) - sharp).square().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sync(device)

    step()
    rounds = 2 if name == "paper" and device == "cpu" else 4
    benchmark.pedantic(step, rounds=rounds, iterations=1)
    benchmark.extra_info["samples_per_s"] = 4 / benchmark.stats.stats.mean


@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize("activation", ["elu", "torch_elu", "relu"])
@pytest.mark.parametrize("stages", [4, 6])
def test_hqs_inference_per_image(benchmark, stages, activation, device, monkeypatch):
    """The HQS family (`pydeblur.hqs`, stages of 32 channels): its ELU against torch's F.elu (the
    peer) and ReLU, batch 1, 3x256x256, against the paper's 0.347 s."""
    import pydeblur.hqs as hqs

    if activation == "torch_elu":
        monkeypatch.setitem(hqs.ACTIVATIONS, "elu", torch.nn.functional.elu)
    config = hqs.HQSConfig(stages=stages, activation="relu" if activation == "relu" else "elu")
    model = hqs.HQSNet(config).to(device).eval()
    for stage in model.stages:  # a trained network's CNNs are not zero
        torch.nn.init.normal_(stage.cnn.convs[-1].weight, std=1e-3)
    blurred, psf = inputs(1, 256, device)
    benchmark.group = f"hqs inference 1x3x256x256 {stages} stages {device}"
    time_inference(benchmark, model, blurred, psf, device, rounds=5)
