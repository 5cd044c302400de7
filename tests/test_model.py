"""The network: shapes, heads, options, gradients, and safetensors save/load with its model card."""

import dataclasses
import json
import math

import pytest
import torch

from pydeblur.features import wiener_features
from pydeblur.model import CONFIGS, ContextBranch, DeblurNet, ModelConfig, noise_descriptor
from pydeblur.noise import PAPER_SNR_DB, snr_to_nsr
from pydeblur.weights_io import load_model, read_card, save_weights


def inputs(batch=2, size=32, psf_size=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    blurred = torch.rand(batch, 3, size, size, generator=g)
    psf = torch.rand(batch, 1, psf_size, psf_size, generator=g)
    return blurred, psf / psf.sum(dim=(-2, -1), keepdim=True)


def test_paper_config_is_the_papers():
    cfg = CONFIGS["paper"]
    assert (cfg.blocks, cfg.channels, cfg.kernel_size, cfg.head) == (12, 64, 5, "direct")
    assert cfg.snr_db == PAPER_SNR_DB and len(cfg.snr_db) == 15 and cfg.snr_mode == "db"
    assert cfg.dropout == pytest.approx(0.2)  # the paper's keep probability 0.8
    assert not (cfg.normalize_input or cfg.learn_nsr or cfg.bilateral_tail)
    model = DeblurNet("paper")
    assert model.conv_in.in_channels == 48 and model.conv_in.out_channels == 64
    convs = 2 + 2 * 12
    expected = 48 * 64 * 25 + 64 + (convs - 2) * (64 * 64 * 25 + 64) + 64 * 3 * 25 + 3
    assert sum(p.numel() for p in model.parameters()) == expected
    assert {"small", "tiny", "default"} <= set(CONFIGS)


@pytest.mark.parametrize("head", ["direct", "mix"])
def test_forward_shape_dtype_and_gradient(head):
    model = DeblurNet(ModelConfig(blocks=1, channels=8, kernel_size=3, dropout=0.0, head=head))
    blurred, psf = inputs()
    blurred.requires_grad_(True)
    out = model(blurred, psf)
    assert out.shape == blurred.shape and out.dtype == blurred.dtype
    out.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())
    assert blurred.grad is not None and torch.isfinite(blurred.grad).all()


def test_bf16_autocast_runs_the_network_in_bf16_and_the_features_in_float32():
    model = DeblurNet(ModelConfig(blocks=1, channels=8, kernel_size=3, dropout=0.0, head="direct"))
    blurred, psf = inputs()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model.features(blurred, psf).dtype == torch.float32
        out = model(blurred, psf)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    torch.testing.assert_close(out, model(blurred, psf), atol=0.05, rtol=0.05)


def test_features_stack_blurred_then_one_wiener_image_per_snr():
    blurred, psf = inputs(size=24, psf_size=5)
    nsr = snr_to_nsr([10.0, 30.0])
    feats = wiener_features(blurred, psf, nsr)
    assert feats.shape == (2, 9, 24, 24)
    torch.testing.assert_close(feats[:, :3], blurred)
    # The stronger-regularised filter (10 dB) gives a smoother result than the 30 dB one.
    assert feats[:, 3:6].diff(dim=-1).abs().mean() < feats[:, 6:9].diff(dim=-1).abs().mean()


def test_snr_modes():
    torch.testing.assert_close(
        snr_to_nsr([10.0, 20.0]), torch.tensor([0.1, 0.01], dtype=torch.float64)
    )
    torch.testing.assert_close(
        snr_to_nsr([10.0, 20.0], "linear"), torch.tensor([0.1, 0.05], dtype=torch.float64)
    )
    with pytest.raises(ValueError, match="mode"):
        snr_to_nsr([10.0], "log")
    linear = DeblurNet(
        ModelConfig(blocks=0, channels=4, kernel_size=3, dropout=0.0, snr_mode="linear")
    )
    torch.testing.assert_close(linear.nsr, 1 / torch.tensor(PAPER_SNR_DB))


def test_mix_head_starts_from_the_blurred_and_the_regularised_wiener_images():
    model = DeblurNet("tiny")
    blurred, psf = inputs()
    candidates = model.features(blurred, psf).unflatten(
        1, (-1, 3)
    )  # blurred, then 15 Wiener images
    weights = torch.tensor([1.0] + [1.0 if snr <= 21 else math.exp(-3) for snr in PAPER_SNR_DB])
    expected = (candidates * (weights / weights.sum()).view(1, -1, 1, 1, 1)).sum(dim=1)
    torch.testing.assert_close(model(blurred, psf), expected, rtol=1e-5, atol=1e-5)


def test_clamp_features_clips_only_the_wiener_images():
    cfg = ModelConfig(
        blocks=0, channels=4, kernel_size=3, dropout=0.0, head="mix", clamp_features=True
    )
    model = DeblurNet(cfg)
    blurred, psf = inputs()
    blurred = blurred * 4 - 2  # out of range on purpose
    raw = model.features(blurred, psf).unflatten(1, (-1, 3))
    clipped = torch.cat([raw[:, :1], raw[:, 1:].clamp(-0.5, 1.5)], dim=1)
    weights = torch.softmax(model.conv_out.bias[3:], 0).view(1, -1, 1, 1, 1)
    torch.testing.assert_close(
        model(blurred, psf), (clipped * weights).sum(1), rtol=1e-5, atol=1e-5
    )


def test_learned_nsr_gets_a_gradient_and_fixed_nsr_does_not():
    blurred, psf = inputs()
    learned = DeblurNet(
        ModelConfig(blocks=1, channels=8, kernel_size=3, dropout=0.0, learn_nsr=True)
    )
    learned(blurred, psf).square().mean().backward()
    assert learned.log_nsr.grad is not None and learned.log_nsr.grad.abs().sum() > 0
    fixed = DeblurNet("tiny")
    assert "log_nsr" not in dict(fixed.named_parameters())
    assert "log_nsr" in fixed.state_dict()


def test_normalize_input_is_undone_on_the_output():
    blurred, psf = inputs()
    cfg = ModelConfig(
        blocks=1, channels=8, kernel_size=3, dropout=0.0, head="direct", normalize_input=True
    )
    model = DeblurNet(cfg).eval()
    with torch.no_grad():
        model.conv_out.weight.zero_()
        model.conv_out.bias.fill_(0.5)  # the trunk outputs 0.5 in normalised units
    mean = blurred.mean(dim=(1, 2, 3), keepdim=True)
    std = blurred.std(dim=(1, 2, 3), keepdim=True)
    torch.testing.assert_close(model(blurred, psf), (0.5 * std + mean).expand_as(blurred))


def test_bilateral_tail_filters_the_output():
    from pydeblur import ops

    blurred, psf = inputs()
    plain = DeblurNet("tiny").eval()
    tailed = DeblurNet(ModelConfig(**{**plain.config.to_dict(), "bilateral_tail": True})).eval()
    tailed.load_state_dict(plain.state_dict())
    torch.testing.assert_close(
        tailed(blurred, psf), ops.bilateral_filter(plain(blurred, psf), kernel_size=7)
    )


@pytest.mark.parametrize("side, window", [(3, 5), (2, 3), (4, 7)])
def test_bilateral_tail_fits_its_window_to_tiny_images(side, window):
    from pydeblur import ops

    plain = DeblurNet("tiny").eval()
    tailed = DeblurNet(ModelConfig(**{**plain.config.to_dict(), "bilateral_tail": True})).eval()
    tailed.load_state_dict(plain.state_dict())
    blurred = torch.rand(1, 3, side, side + 2)
    psf = torch.full((1, 1, 1, 1), 1.0)
    with torch.no_grad():
        out = tailed(blurred, psf)
        expected = ops.bilateral_filter(plain(blurred, psf), kernel_size=window)
    assert out.shape == blurred.shape and bool(torch.isfinite(out).all())
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"blocks": -1}, "blocks"),
        ({"kernel_size": 4}, "kernel_size"),
        ({"dropout": 0.8 + 0.2}, "dropout"),
        ({"head": "sum"}, "head"),
        ({"context_levels": 5}, "context_levels"),
        ({"snr_mode": "dB"}, "mode"),
    ],
)
def test_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**kwargs)


def test_a_new_context_branch_leaves_a_trained_model_unchanged():
    plain_config = ModelConfig(blocks=1, channels=8, kernel_size=3, dropout=0.0, head="mix")
    plain = DeblurNet(plain_config).eval()
    for p in plain.parameters():  # a "trained" model: every weight non-zero
        torch.nn.init.normal_(p, std=0.1)
    wider = DeblurNet(ModelConfig(**{**plain_config.to_dict(), "context_levels": 2})).eval()
    missing, unexpected = wider.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(name.startswith("context.") for name in missing)
    blurred, psf = inputs(size=37)  # odd: the branch pools with ceil and upsamples to exact sizes
    torch.testing.assert_close(wider(blurred, psf), plain(blurred, psf))
    wider.context.up[0].weight.data.normal_(std=0.1)
    assert not torch.allclose(wider(blurred, psf), plain(blurred, psf))


def test_new_noise_conditioning_leaves_a_trained_model_unchanged_until_trained():
    plain_config = ModelConfig(blocks=2, channels=8, kernel_size=3, dropout=0.0, head="mix")
    plain = DeblurNet(plain_config).eval()
    for p in plain.parameters():
        torch.nn.init.normal_(p, std=0.1)
    told = DeblurNet(ModelConfig(**{**plain_config.to_dict(), "noise_conditioning": True})).eval()
    missing, unexpected = told.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(name.startswith("conditioning.") for name in missing)
    blurred, psf = inputs()
    torch.testing.assert_close(told(blurred, psf), plain(blurred, psf))
    told.conditioning.mlp[-1].weight.data.normal_(std=0.1)
    assert not torch.allclose(told(blurred, psf), plain(blurred, psf))


def test_noise_conditioning_reads_the_descriptor_it_is_given_else_that_of_its_input():
    torch.manual_seed(0)
    net = DeblurNet(dataclasses.replace(CONFIGS["tiny"], noise_conditioning=True)).eval()
    for p in net.parameters():  # the mix head's last conv too: its trunk must count
        torch.nn.init.normal_(p, std=0.1)
    blurred, psf = inputs(batch=1)
    grey = blurred[:, :1].expand(-1, 3, -1, -1)
    own = noise_descriptor(grey)
    assert float(own[0, 1]) == pytest.approx(1.0, abs=1e-5)  # one noise in every channel
    with torch.no_grad():
        torch.testing.assert_close(net.network(grey, psf), net.network(grey, psf, own))
        independent = own.clone()
        independent[0, 1] = 0.0
        assert not torch.allclose(net.network(grey, psf), net.network(grey, psf, independent))


def test_noise_descriptor_is_the_log_level_and_the_channel_correlation():
    y = torch.rand(2, 3, 32, 32)
    descriptor = noise_descriptor(y, torch.tensor([0.01, 0.1]))
    torch.testing.assert_close(descriptor[:, 0], torch.tensor([0.0, 1.0]))
    assert descriptor.shape == (2, 2) and not descriptor.requires_grad


def test_context_branch_counts_its_maps_at_their_resolution():
    branch = DeblurNet("default").context  # 32 channels, 3 levels: widths 64, 128, 128
    # full resolution: upsampled output + sum (2 x 32); level l at 1/4^l of the pixels: the down
    # block's two maps and, above the coarsest level, the up conv's output and its sum
    expected = 2 * 32 + (2 * 64 + 2 * 64) / 4 + (2 * 128 + 2 * 128) / 16 + (2 * 128) / 64
    assert branch.activation_channels == expected == 164


@pytest.mark.parametrize("levels", [1, 3])
def test_context_branch_reach_bounds_its_receptive_field(levels):
    torch.manual_seed(0)
    branch = ContextBranch(4, levels).double()
    for p in branch.parameters():
        torch.nn.init.normal_(p, std=0.3)
    x = torch.rand(1, 4, 161, 150, dtype=torch.float64)
    moved = x.clone()
    moved[..., 80, 75] += 1.0
    changed = (branch(moved) - branch(x)).abs().sum(dim=(0, 1)) > 0
    rows, cols = changed.nonzero(as_tuple=True)
    assert changed[80, 75]
    far = max((rows - 80).abs().max().item(), (cols - 75).abs().max().item())
    assert far <= branch.reach
    assert far > branch.reach // 2  # the bound is not loose by more than a factor of two


def test_bad_inputs_are_named():
    model = DeblurNet("tiny")
    blurred, psf = inputs()
    with pytest.raises(ValueError, match="blurred"):
        model(blurred[:, :1], psf)
    with pytest.raises(ValueError, match="psf"):
        model(blurred, psf[:1])
    with pytest.raises(ValueError, match="unknown model config"):
        DeblurNet("huge")


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = DeblurNet(
        ModelConfig(blocks=2, channels=8, kernel_size=3, dropout=0.0, head="mix", learn_nsr=True)
    )
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    path = save_weights(
        model, tmp_path / "m.safetensors", {"seed": 3, "steps": 10, "metrics": {"psnr": 1.0}}
    )
    card = read_card(path)
    assert card["seed"] == 3 and card["steps"] == 10 and card["config"]["blocks"] == 2
    loaded = load_model(path)
    assert not loaded.training and loaded.config == model.config
    blurred, psf = inputs()
    torch.testing.assert_close(loaded(blurred, psf), model.eval()(blurred, psf))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "m.json",
        "m.safetensors",
    ]  # no temp files left


def test_load_refuses_mismatched_configs(tmp_path):
    path = save_weights(DeblurNet("tiny"), tmp_path / "m.safetensors", {})
    with pytest.raises(ValueError, match="does not match"):
        load_model(path, config="small")
    load_model(path, config="tiny")
    card = json.loads((tmp_path / "m.json").read_text())
    card["config"]["channels"] = 16
    (tmp_path / "m.json").write_text(json.dumps(card))
    with pytest.raises(ValueError, match="model card"):
        load_model(path)


def test_load_refuses_tensors_that_do_not_fit_the_header(tmp_path):
    from safetensors.torch import save_file

    model = DeblurNet("tiny")
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    tensors["conv_in.weight"] = torch.zeros(4, 48, 3, 3)
    header = {"format": "pydeblur.DeblurNet/1", "config": json.dumps(model.config.to_dict())}
    save_file(tensors, str(tmp_path / "bad.safetensors"), metadata=header)
    with pytest.raises(ValueError, match="conv_in.weight"):
        load_model(tmp_path / "bad.safetensors")


def test_load_refuses_pickles_and_unknown_names(tmp_path):
    torch.save(DeblurNet("tiny").state_dict(), tmp_path / "m.pt")
    with pytest.raises(Exception):  # noqa: B017 - safetensors refuses to parse a pickle
        load_model(tmp_path / "m.pt")
    with pytest.raises(FileNotFoundError, match="no shipped weights"):
        load_model("no-such-model")
