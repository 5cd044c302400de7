"""GPU figures for benchmarks/gpu_check.sh: copy rate, each operator against its peers, the network end
to end. Prints a short Markdown table and writes the JSON whose keys the README quotes.

Effective bandwidth of an operator = (bytes of its inputs + outputs) / time, as a fraction of the
measured device-to-device copy rate (bytes read + written / time). `<op>_fwd_ms` is the operator as
users call it, with its value checks (NaN, signs: one GPU synchronisation per call);
`<op>_fwd_ms_unchecked` runs under `skip_value_checks()`, and the bandwidth fraction uses that time,
the kernels' own.
"""

import argparse
import json
import statistics
from collections.abc import Callable

import torch

from benchmarks.test_bench_wiener_bank import torch_batched as torch_wiener
from pydeblur.ops import bilateral_filter, skip_value_checks, ssim, wiener_bank
from tests.references import reference_ssim_same


def torch_ssim_same(x, y):
    return reference_ssim_same(x, y).mean()


B, C, H, W, S = 8, 3, 256, 256, 15


def cuda_ms(fn: Callable[[], object], warmup: int = 5, iters: int = 30) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def copy_gbps() -> float:
    a = torch.empty(256 * 2**20, device="cuda")
    b = torch.empty_like(a)
    ms = cuda_ms(lambda: b.copy_(a))
    return 2 * a.numel() * a.element_size() / ms / 1e6


def fwd_bwd(op: Callable[..., torch.Tensor], *inputs: torch.Tensor) -> Callable[[], None]:
    leaves = [t.detach().requires_grad_() for t in inputs]

    def run() -> None:
        op(*leaves).float().sum().backward()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", required=True)
    args = parser.parse_args()
    torch.backends.cudnn.benchmark = True
    dev = "cuda"
    torch.manual_seed(0)
    x = torch.rand(B, C, H, W, device=dev)
    y = torch.rand(B, C, H, W, device=dev)
    psf = torch.rand(34, 34, device=dev)  # one PSF for the batch, as in benchmarks/
    psf /= psf.sum()
    nsr = 10 ** (-torch.arange(9.0, 66.0, 4.0, device=dev) / 10)
    image_bytes = x.numel() * 4
    report: dict[str, object] = {
        "card": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "copy_GBps": round(copy_gbps(), 1),
    }
    copy = report["copy_GBps"]

    def record(
        op: str, fwd: Callable[[], object], fwdbwd_ms: float, bytes_moved: int, peers: dict
    ) -> None:
        fwd_ms = cuda_ms(fwd)
        with skip_value_checks():
            unchecked_ms = cuda_ms(fwd)
        report[f"{op}_fwd_ms"] = round(fwd_ms, 4)
        report[f"{op}_fwd_ms_unchecked"] = round(unchecked_ms, 4)
        report[f"{op}_fwdbwd_ms"] = round(fwdbwd_ms, 4)
        report[f"{op}_bandwidth_fraction"] = round(bytes_moved / unchecked_ms / 1e6 / copy, 3)
        for peer, peer_ms in peers.items():
            if peer_ms is not None:
                report[f"{op}_speedup_vs_{peer}"] = round(peer_ms / fwd_ms, 2)

    peers = {"torch": cuda_ms(lambda: torch_wiener(y, psf, nsr))}
    try:
        import cupy

        cy, cpsf = cupy.asarray(y), cupy.asarray(psf)
        cnsr = cupy.asarray(nsr)

        def cupy_wiener():
            pad = cupy.zeros((H, W), dtype=cupy.float32)
            pad[:34, :34] = cpsf
            otf = cupy.fft.rfft2(cupy.roll(pad, (-17, -17), (0, 1)))
            filt = otf.conj() / (cupy.abs(otf) ** 2 + cnsr[:, None, None, None])
            return cupy.fft.irfft2(filt * cupy.fft.rfft2(cy)[:, None], s=(H, W))

        peers["cupy"] = cuda_ms(cupy_wiener)
    except ImportError:
        pass
    record(
        "wiener_bank",
        lambda: wiener_bank(y, psf, nsr=nsr),
        cuda_ms(fwd_bwd(lambda a: wiener_bank(a, psf, nsr=nsr), y)),
        image_bytes * (1 + S),
        peers,
    )

    peers = {}
    try:
        import kornia

        def kornia_bilateral(t):
            return kornia.filters.bilateral_blur(t, 7, 40 / 255, (10.0, 10.0), "reflect", "l1")

        peers["kornia"] = cuda_ms(lambda: kornia_bilateral(x))
        peers["kornia_fwdbwd"] = cuda_ms(fwd_bwd(kornia_bilateral, x))
    except ImportError:
        pass
    bil_fb = cuda_ms(fwd_bwd(bilateral_filter, x))
    record(
        "bilateral_filter",
        lambda: bilateral_filter(x),
        bil_fb,
        2 * image_bytes,
        {k: v for k, v in peers.items() if k == "kornia"},
    )
    if "kornia_fwdbwd" in peers:
        report["bilateral_filter_fwdbwd_speedup_vs_kornia"] = round(
            peers["kornia_fwdbwd"] / bil_fb, 2
        )

    peers = {"torch": cuda_ms(lambda: torch_ssim_same(x, y))}
    ssim_fb = cuda_ms(fwd_bwd(ssim, x, y))
    peers_fb = {"torch": cuda_ms(fwd_bwd(torch_ssim_same, x, y))}
    try:
        import pytorch_msssim

        peers["pytorch_msssim"] = cuda_ms(lambda: pytorch_msssim.ssim(x, y, data_range=1.0))
        peers_fb["pytorch_msssim"] = cuda_ms(
            fwd_bwd(lambda a, b: pytorch_msssim.ssim(a, b, data_range=1.0), x, y)
        )
    except ImportError:
        pass
    record("ssim", lambda: ssim(x, y), ssim_fb, 2 * image_bytes, peers)
    for peer, peer_ms in peers_fb.items():
        report[f"ssim_fwdbwd_speedup_vs_{peer}"] = round(peer_ms / ssim_fb, 2)

    report.update(end_to_end())
    report.update(wiener_bank_graphed(y, psf, nsr))
    with open(args.json, "w") as f:
        json.dump(report, f, indent=2)
    print("| key | value |\n|---|---|")
    for key, value in report.items():
        print(f"| {key} | {value} |")


def wiener_bank_graphed(y: torch.Tensor, psf: torch.Tensor, nsr: torch.Tensor) -> dict[str, object]:
    """wiener_bank's forward replayed from a CUDA graph at batch 8 and 1 (value checks skipped: they
    read the device back), and eager at batch 1, so that the host's share shows. Last in the report:
    a failed capture cannot spoil the figures before it."""
    out: dict[str, object] = {}
    try:
        with skip_value_checks():
            for batch, key in ((y.shape[0], "wiener_bank"), (1, "wiener_bank_b1")):
                images = y[:batch]

                def forward(images=images):
                    return wiener_bank(images, psf, nsr=nsr)

                if batch == 1:  # batch 8's is wiener_bank_fwd_ms_unchecked, above
                    out[f"{key}_fwd_ms_unchecked"] = round(cuda_ms(forward), 4)
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):  # the cuFFT plans are made outside the capture
                    for _ in range(2):
                        forward()
                torch.cuda.current_stream().wait_stream(side)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    forward()
                out[f"{key}_fwd_ms_graph"] = round(cuda_ms(graph.replay), 4)
    except RuntimeError as error:
        out["wiener_bank_graph_error"] = str(error)[:300]
    return out


def end_to_end() -> dict[str, float]:
    """The network with its features: bf16 autocast, channels_last, cuDNN autotuning, torch.compile."""
    from pydeblur.model import CONFIGS, DeblurNet
    from pydeblur.weights_io import load_model

    try:
        model, name = load_model("default", device="cuda"), "default"
    except (OSError, ValueError):
        model, name = DeblurNet(CONFIGS["paper"]).cuda(), "paper (random weights)"
    model = model.eval().to(memory_format=torch.channels_last)
    compiled = torch.compile(model)
    out = {"end_to_end_model": name}
    for batch, key in ((1, "end_to_end_ms_b1"), (64, "throughput_img_per_s_b64")):
        blurred = torch.rand(batch, 3, H, W, device="cuda")
        psf = torch.rand(batch, 1, 34, 34, device="cuda")
        psf /= psf.sum((-2, -1), keepdim=True)

        def run(net=compiled, blurred=blurred, psf=psf):
            with torch.inference_mode(), torch.autocast("cuda", torch.bfloat16):
                return net(blurred, psf)

        ms = cuda_ms(run, warmup=3, iters=20)
        out[key] = round(ms, 3) if batch == 1 else round(batch / ms * 1e3, 1)
    return out


if __name__ == "__main__":
    main()
