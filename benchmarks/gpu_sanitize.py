"""Runs every CUDA kernel once, forward and backward, on small inputs: the workload that
compute-sanitizer (memcheck, racecheck) checks in benchmarks/gpu_check.sh."""

import torch

from pydeblur.ops import bilateral_filter, ssim_loss, wiener_bank


def main() -> None:
    torch.manual_seed(0)
    device = "cuda"
    # Odd sizes, so tiles at the image edges are partial.
    x = torch.rand(2, 3, 37, 53, device=device, requires_grad=True)
    y = torch.rand(2, 3, 37, 53, device=device, requires_grad=True)
    psf = torch.rand(2, 1, 7, 6, device=device)
    psf = (psf / psf.sum((-2, -1), keepdim=True)).requires_grad_()
    nsr = torch.tensor([1e-3, 1e-2, 1e-1], device=device, requires_grad=True)

    wiener_bank(x, psf, nsr=nsr).square().sum().backward()
    bilateral_filter(x, 7).square().sum().backward()
    for padding in ("same", "valid"):
        ssim_loss(x, y, padding=padding).backward()
    torch.cuda.synchronize()
    print("all kernels ran forward and backward")


if __name__ == "__main__":
    main()
