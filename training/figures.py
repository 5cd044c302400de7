"""Comparison figures like the paper's Figures 5-7: sharp, blurred, baseline(s) and networks side by side,
each panel with a zoomed inset of the same detail-rich region."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from pydeblur.atomic import save_figure  # noqa: E402

SHOWN_CLASSICAL = (
    "Blurred input",
    "Paper baseline: Wiener (set's average SNR) + bilateral",
    "ADMM-TV",
)
SHORT_NAMES = {
    "Blurred input": "blurred",
    "Paper baseline: Wiener (set's average SNR) + bilateral": "paper baseline",
    "Peer: FDN (Kruse et al. 2017), the authors' weights, our inference": "FDN (peer)",
}


def zoom_box(sharp: torch.Tensor, fraction: float = 0.25) -> tuple[int, int, int]:
    """(row, column, side) of the square window, `fraction` of the smaller side, with the most
    gradient energy in sharp [C, H, W]: the region the inset magnifies."""
    grey = sharp.float().mean(0, keepdim=True)[None]
    gy = (grey[..., 1:, :-1] - grey[..., :-1, :-1]).abs()
    gx = (grey[..., :-1, 1:] - grey[..., :-1, :-1]).abs()
    side = max(8, int(min(sharp.shape[-2:]) * fraction))
    stride = max(1, side // 4)
    energy = F.avg_pool2d(gx + gy, side, stride=stride)[0, 0]
    index = int(energy.flatten().argmax())
    row, col = divmod(index, energy.shape[1])
    return row * stride, col * stride, side


def _shown_methods(methods: list[str]) -> list[str]:
    shown = [m for m in methods if m.startswith("Model: ")]
    classical = [m for m in methods if any(m.startswith(prefix) for prefix in SHOWN_CLASSICAL)]
    return classical + shown


def _as_display(image: torch.Tensor):
    array = image.clamp(0, 1).permute(1, 2, 0).numpy()
    return array[..., 0] if array.shape[2] == 1 else array


def comparison_figure(
    path: str | Path,
    items: list[dict],
    indices: list[int],
    kept: dict[str, dict[int, torch.Tensor]],
    block: dict,
) -> Path:
    """Write a PNG grid: one row per item of `indices`, columns sharp, blurred, paper baseline, ADMM-TV
    and every model, each titled with its PSNR on that image, with a 2x inset of the zoom region.

    kept: method name -> {item index: restored [C, H, W]}; block: the set's results (for the PSNRs).
    """
    path = Path(path)
    methods = _shown_methods(list(kept))
    columns = 1 + len(methods)
    rows = len(indices)
    fig, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.8 * rows), squeeze=False)
    for r, index in enumerate(indices):
        sharp = items[index]["sharp"]
        box = zoom_box(sharp)
        panels = [("sharp", sharp)]
        for method in methods:
            value = block["methods"][method]["per_image"]["psnr"][index]
            label = SHORT_NAMES.get(method, method.removeprefix("Model: ").split(" (")[0])
            panels.append((f"{label}\n{value:.2f} dB", kept[method][index]))
        for c, (title, image) in enumerate(panels):
            _panel(axes[r][c], image, box, title if r == 0 or c > 0 else "")
        axes[r][0].set_ylabel(f"{items[index]['name']} ({items[index]['group']})", fontsize=8)
    fig.suptitle(block["title"], fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path)
    return path


def _panel(ax, image: torch.Tensor, box: tuple[int, int, int], title: str) -> None:
    row, col, side = box
    height, width = image.shape[-2:]
    grey = image.shape[0] == 1
    cmap = "gray" if grey else None
    ax.imshow(_as_display(image), cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    ax.add_patch(
        Rectangle((col - 0.5, row - 0.5), side, side, fill=False, edgecolor="yellow", lw=1)
    )
    # The inset goes in the corner opposite the zoomed region, so it never hides it (axes fractions
    # count from the bottom; image rows from the top).
    left = 0.0 if col + side / 2 > width / 2 else 0.55
    bottom = 0.55 if row + side / 2 > height / 2 else 0.0
    inset = ax.inset_axes([left, bottom, 0.45, 0.45])
    inset.imshow(
        _as_display(image[:, row : row + side, col : col + side]),
        cmap=cmap,
        vmin=0,
        vmax=1,
        interpolation="nearest",
    )
    for spine in inset.spines.values():
        spine.set_edgecolor("yellow")
    inset.set_xticks([])
    inset.set_yticks([])
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=8)
