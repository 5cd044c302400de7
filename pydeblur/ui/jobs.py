"""The whole photo deblurred in a background thread, with its progress for the page's progress bar.

The work is `pydeblur.restore.Deblurrer.__call__` itself. Its progress is counted, not guessed: a
forward hook on the first layer of the model's network (`DeblurNet.conv_in`, run once a tile by
`DeblurNet.network`, which `pydeblur.tiling.run_tiled` runs tile by tile; a model of another class:
the model itself) counts the tiles done against the tiles `Deblurrer.plan` lays out; the model's
last step on the whole image follows (the last PROGRESS_AFTER_TILES of the bar).
"""

from __future__ import annotations

import itertools
import threading
import time

import numpy as np

PROGRESS_AFTER_TILES = 0.1  # the share of the bar left for the model's last step on the whole image
_ids = itertools.count(1)


def tile_count(deblurrer, psf_shape: tuple[int, int], image_shape: tuple[int, int]) -> int:
    """How many tiles `deblurrer` runs its network over for an image of `image_shape` (H, W).

    >>> from pydeblur.restore import Deblurrer
    >>> tile_count(Deblurrer(device="cpu", tile=256, overlap=32), (9, 9), (600, 400))
    6
    """
    from pydeblur.tiling import tile_layout

    tile, overlap = deblurrer.plan(tuple(psf_shape), tuple(image_shape))
    rows, _ = tile_layout(image_shape[0], tile, overlap)
    cols, _ = tile_layout(image_shape[1], tile, overlap)
    return len(rows) * len(cols)


def _once_a_tile(model):
    """The module that runs once for each tile of the network."""
    from pydeblur.model import DeblurNet

    return model.conv_in if isinstance(model, DeblurNet) else model


class DeblurJob:
    """`deblurrer(image, psf, noise_sigma, strength, gamma, clip_level)` in a background thread, holding `lock` (the
    server's one lock on the model) while it runs.

    state: "queued" (before `start`), "running", "done" or "failed" (then `message` says why);
    progress in [0, 1]; result: the deblurred image (the kind of `image`) once done.

    >>> import numpy as np
    >>> from pydeblur.restore import Deblurrer
    >>> job = DeblurJob(Deblurrer(device="cpu"), np.full((40, 48, 3), 0.5, np.float32), np.ones((3, 3)))
    >>> job.start().wait(60).state, job.progress, job.result.shape
    ('done', 1.0, (40, 48, 3))
    """

    def __init__(
        self,
        deblurrer,
        image: np.ndarray,
        psf: np.ndarray,
        noise_sigma: float | None = None,
        strength: float = 1.0,
        lock: threading.Lock | None = None,
        gamma: str = "linear",
        clip_level: float | None = None,
    ):
        self.id = f"job{next(_ids)}"
        self.state = "queued"
        self.progress = 0.0
        self.message = "starting"
        self.result: np.ndarray | None = None
        self.seconds: float | None = None
        self._work = (deblurrer, image, psf, noise_sigma, strength, gamma, clip_level)
        self._lock = lock or threading.Lock()
        self._thread = threading.Thread(
            target=self._run, name=f"pydeblur-ui-{self.id}", daemon=True
        )

    def start(self) -> DeblurJob:
        """Start the thread; returns the job.

        >>> from pydeblur.restore import Deblurrer
        >>> DeblurJob(Deblurrer(device="cpu"), np.zeros((32, 32)), np.ones((3, 3))).start().wait(60).state
        'done'
        """
        self.state = "running"
        self._thread.start()
        return self

    def wait(self, timeout: float | None = None) -> DeblurJob:
        """Wait for the thread to end (at most `timeout` seconds); returns the job.

        >>> from pydeblur.restore import Deblurrer
        >>> job = DeblurJob(Deblurrer(device="cpu"), np.zeros((32, 32)), np.ones((40, 40))).start()
        >>> job.wait(60).state, job.message
        ('failed', 'psf of size 40x40 is larger than the image (32x32)')
        """
        self._thread.join(timeout)
        return self

    def status(self) -> dict:
        """What the page polls: id, state, progress, message, seconds.

        >>> from pydeblur.restore import Deblurrer
        >>> DeblurJob(Deblurrer(device="cpu"), np.zeros((32, 32)), np.ones((3, 3))).status()["state"]
        'queued'
        """
        return {
            "id": self.id,
            "state": self.state,
            "progress": round(self.progress, 4),
            "message": self.message,
            "seconds": self.seconds,
        }

    def _run(self) -> None:
        deblurrer, image, psf, *settings = self._work
        start = time.perf_counter()
        network = _once_a_tile(deblurrer.model)
        handle = None
        try:
            with self._lock:
                total = tile_count(deblurrer, psf.shape, image.shape[:2])
                done = itertools.count(1)
                share = 1.0 - PROGRESS_AFTER_TILES

                def count_tile(module, inputs, output):
                    tiles = next(done)
                    self.progress = share * min(tiles, total) / total
                    self.message = f"tile {min(tiles, total)} of {total}"

                handle = network.register_forward_hook(count_tile)
                self.message = f"tile 0 of {total}"
                self.result = deblurrer(image, psf, *settings)
            self.progress, self.state = 1.0, "done"
            self.message = f"done in {time.perf_counter() - start:.1f} s"
        except Exception as error:  # a failed job says why; the server goes on
            self.state = "failed"
            self.message = " ".join(str(error).split()) or type(error).__name__
        finally:
            if handle is not None:
                handle.remove()
            self.seconds = round(time.perf_counter() - start, 3)
            self._work = None
