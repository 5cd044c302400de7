"""What the server holds between requests, and what each request does with it, without HTTP: the
open photo, the uploaded kernel file, the point light's kernel, the model, the whole-photo job.

One `UiState` per server: the page is one person's, on their own machine. Every file it reads was
written into its `Workspace` by the server; a client's file name is only shown (`display_name`),
never opened. Errors are one-line ValueErrors naming the client's file or the setting; `NoPhoto`,
`Busy` and `Superseded` say why a request cannot be served now.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path, PurePath

import numpy as np

from pydeblur.io import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES
from pydeblur.ui.jobs import DeblurJob
from pydeblur.ui.settings import Settings, command_line, output_name
from pydeblur.ui.workspace import Workspace, display_name

PREVIEW_SIZES = (256, 384, 512)


class NoPhoto(Exception):
    """A request that needs a photo came before one was opened.

    >>> str(NoPhoto())
    'open a photo first'
    """

    def __init__(self, message: str = "open a photo first"):
        super().__init__(message)


class Busy(Exception):
    """The model is deblurring the whole photo: the request must wait for it to end.

    >>> isinstance(Busy("busy"), Exception)
    True
    """


class Superseded(Exception):
    """A network preview that a newer one replaced before it started.

    >>> str(Superseded())
    'a newer preview was asked for'
    """

    def __init__(self, message: str = "a newer preview was asked for"):
        super().__init__(message)


class NoSuchJob(KeyError):
    """A job id that is not the current job's.

    >>> isinstance(NoSuchJob("no such job: job9"), KeyError)
    True
    """


@dataclass(frozen=True)
class Photo:
    """An open photo: as read (`pydeblur.io.read_image`), as RGB, its file's sample type and name,
    and its noise estimate (`pydeblur.restore.estimate_noise`, in linear light for a file the model
    decodes from sRGB: the command's `--gamma auto`, `pydeblur.cli.deblur_cmd.file_gamma`).

    >>> Photo(np.zeros((2, 3)), np.zeros((2, 3, 3)), np.dtype(np.uint8), "a.png", 0.0).shape
    (2, 3)
    """

    image: np.ndarray
    rgb: np.ndarray
    sample_type: np.dtype
    name: str
    noise: float

    @property
    def processing(self) -> dict:
        """What the model is told besides the noise and strength: the gamma and the clipped-highlight
        level that `pydeblur deblur` uses for this file by default, so the page and the command it
        shows give the same result.

        >>> Photo(np.zeros((2, 3)), np.zeros((2, 3, 3)), np.dtype(np.uint8), "a.png", 0.0).processing
        {'gamma': 'srgb', 'clip_level': 0.98}
        """
        from pydeblur.cli.deblur_cmd import CLIP_LEVEL, file_gamma

        return {"gamma": file_gamma(self.sample_type), "clip_level": CLIP_LEVEL}

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width).

        >>> Photo(np.zeros((2, 3)), np.zeros((2, 3, 3)), np.dtype(np.uint8), "a.png", 0.0).shape
        (2, 3)
        """
        return self.image.shape[:2]


def _renamed(error: Exception, path: Path, name: str) -> ValueError:
    """The error's one-line message with the workspace path replaced by the client's file name."""
    message = " ".join(str(error).split()) or type(error).__name__
    message = message.replace(str(path), name)
    return ValueError(message if name in message else f"{name}: {message}")


def preview_precision(device) -> str:
    """The network preview's precision on `device` (a torch.device): "bfloat16" where its
    convolutions run natively (`pydeblur.restore.bfloat16_supported`; its speed and accuracy on
    this machine: docs/ui.md), else "float32". The whole-photo job is float32, as the command is.

    >>> import torch
    >>> preview_precision(torch.device("cpu")) in ("bfloat16", "float32")
    True
    """
    from pydeblur.restore import bfloat16_supported

    return "bfloat16" if bfloat16_supported(device) else "float32"


class UiState:
    """The server's state and its operations (see the module's docstring).

    model, device: as `pydeblur.restore.Deblurrer`'s (the model is loaded on first use);
    max_pixels: photos of more pixels are refused (None: no limit); preview_size: the default crop
    side (None: 512 on a GPU or on a CPU with native bfloat16, which the network preview then runs
    in, `preview_precision`; else 256); temp_parent: where the private folder is made.

    >>> state = UiState(device="cpu")
    >>> state.status()["photo"] is None
    True
    >>> state.close()
    """

    def __init__(
        self,
        model: str = "default",
        device: str = "auto",
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        preview_size: int | None = None,
        temp_parent=None,
    ):
        from pydeblur.restore import resolve_device

        self.model_name = str(model)
        self.device = resolve_device(device)
        self.max_pixels = max_pixels
        self.preview_precision = preview_precision(self.device)
        if preview_size is None:
            fast = self.device.type == "cuda" or self.preview_precision == "bfloat16"
            preview_size = 512 if fast else 256
        self.preview_size = preview_size
        self.workspace = Workspace(temp_parent)
        self.photo: Photo | None = None
        self.view: tuple[bytes, float] | None = None  # the overview's PNG and its scale
        self.kernel_file: tuple[np.ndarray, str] | None = None
        self.point: tuple[np.ndarray, tuple[int, int, int, int], dict] | None = None
        self.job: DeblurJob | None = None
        self.lock = threading.Lock()  # the model: one network run at a time
        self._loading = threading.Lock()
        self._deblurrers: dict[str, object] = {}
        self._ticket = 0
        self._tickets = threading.Lock()
        self._written: dict[str, tuple[Path, str]] = {}

    # -- the model ----------------------------------------------------------------------------------

    def deblurrer(self, precision: str = "float32"):
        """The `pydeblur.restore.Deblurrer` at `precision` (the whole photo: float32, as the command;
        the network preview: `preview_precision`), made on first use; both share the loaded model.

        >>> state = UiState(device="cpu")
        >>> type(state.deblurrer()).__name__
        'Deblurrer'
        >>> state.close()
        """
        with self._loading:
            if precision not in self._deblurrers:
                from pydeblur.restore import Deblurrer

                self._deblurrers[precision] = Deblurrer(
                    self.model_name, self.device, precision=precision
                )
            return self._deblurrers[precision]

    def _busy(self) -> bool:
        return self.job is not None and self.job.state in ("queued", "running")

    # -- files --------------------------------------------------------------------------------------

    def upload_path(self, role: str, client_name: str, suffixes: tuple[str, ...]) -> Path:
        """The workspace path an upload of `role` is written to: its suffix the client name's when
        it is one of `suffixes`, else none (the reader tells a file by its content).

        >>> state = UiState(device="cpu")
        >>> state.upload_path("photo", "../x/IMG.JPG", (".jpg",)).name
        'photo.jpg'
        >>> state.close()
        """
        suffix = PurePath(display_name(client_name)).suffix.lower()
        return self.workspace.path(role, suffix if suffix in suffixes else "")

    def open_photo(self, path: Path, client_name: str, remove: bool = True) -> dict:
        """Open the photo the server wrote to `path` (removed afterwards unless `remove` is False:
        the command line's own photo), replacing the open one (its point light too); returns
        `status()["photo"]`.

        >>> import pydeblur, shutil
        >>> state = UiState(device="cpu")
        >>> path = state.upload_path("photo", "demo.png", IMAGE_SUFFIXES)
        >>> _ = shutil.copy(pydeblur.DEMO_PHOTO, path)
        >>> info = state.open_photo(path, "demo.png")
        >>> info["width"], info["height"], info["bits"], path.exists()
        (384, 320, 8, False)
        >>> state.close()
        """
        from pydeblur.io import read_image
        from pydeblur.restore import estimate_noise
        from pydeblur.ui.preview import as_rgb, png_bytes, view_of

        path = Path(path)
        name = display_name(client_name)
        try:
            if self._busy():
                raise Busy("the whole photo is being deblurred; open another when it is done")
            image, sample_type = read_image(path, max_pixels=self.max_pixels)
        except (ValueError, OSError) as error:
            if not remove:
                raise
            raise _renamed(error, path, name) from error
        finally:
            if remove:
                self.workspace.discard("photo")
        rgb = as_rgb(image)
        view, scale = view_of(image)
        from pydeblur.cli.deblur_cmd import file_gamma

        noise = estimate_noise(rgb, file_gamma(sample_type))
        photo = Photo(image, rgb, np.dtype(sample_type), name, noise)
        self.photo, self.view, self.point = photo, (png_bytes(view), scale), None
        self.job = None
        self._forget_results()
        return self._photo_status()

    def open_kernel_file(self, path: Path, client_name: str) -> dict:
        """Read the kernel file the server wrote to `path` (`pydeblur.kernel_io.read_psf`; removed
        afterwards), replacing the previous one; returns {"name", "shape"}.

        >>> import pydeblur, shutil
        >>> state = UiState(device="cpu")
        >>> path = state.upload_path("kernel", "shake.npy", (".npy",))
        >>> _ = shutil.copy(pydeblur.DEMO_PSF, path)
        >>> state.open_kernel_file(path, "shake.npy")
        {'name': 'shake.npy', 'shape': [34, 34]}
        >>> state.close()
        """
        from pydeblur.kernel_io import read_psf

        name = display_name(client_name, "kernel")
        try:
            kernel = read_psf(path)
        except (ValueError, OSError) as error:
            raise _renamed(error, path, name) from error
        finally:
            self.workspace.discard("kernel")
        self.kernel_file = (kernel, name)
        return {"name": name, "shape": list(kernel.shape)}

    def point_light(self, box) -> dict:
        """The kernel of the point light in `box` (X, Y, W, H, photo pixels), by
        `pydeblur.point_light.kernel_from_point_light` on the file's own samples (as `pydeblur psf
        --from-photo` does); returns {"box", "shape", "centre", "snr"}.

        >>> state = UiState(device="cpu")
        >>> state.point_light([0, 0, 9, 9])
        Traceback (most recent call last):
        pydeblur.ui.state.NoPhoto: open a photo first
        >>> state.close()
        """
        from pydeblur.io import to_integer
        from pydeblur.point_light import kernel_from_point_light

        photo = self._need_photo()
        if not isinstance(box, (list, tuple)):
            raise ValueError(f"box must be four integers X, Y, W, H, got {box!r}")
        integer = photo.sample_type in (np.uint8, np.uint16)
        samples = to_integer(photo.image, photo.sample_type) if integer else photo.image
        kernel, info = kernel_from_point_light(samples, box, return_info=True)
        box = tuple(int(v) for v in box)
        self.point = (kernel, box, info)
        return {
            "box": list(box),
            "shape": list(kernel.shape),
            "centre": [round(v, 2) for v in info["centre"]],
            "snr": round(info["snr"], 1),
        }

    # -- settings -----------------------------------------------------------------------------------

    def _need_photo(self) -> Photo:
        if self.photo is None:
            raise NoPhoto()
        return self.photo

    def kernel(self, settings: Settings) -> np.ndarray:
        """The kernel the settings name, checked against the open photo (no larger than it).

        >>> import pydeblur
        >>> state = UiState(device="cpu")
        >>> state.kernel(Settings("motion", "motion:9,0", None, 1.0)).shape
        (1, 11)
        >>> state.close()
        """
        from pydeblur.kernel_io import check_psf, load_psf

        if settings.kind == "file":
            if self.kernel_file is None:
                raise ValueError("no kernel file yet: open one")
            kernel, name = self.kernel_file
        elif settings.kind == "point":
            if self.point is None:
                raise ValueError("no point light yet: draw a box around one on the photo")
            kernel, name = self.point[0], f"the point light's kernel (box {self.point[1]})"
        else:
            kernel, name = load_psf(settings.spec), f"kernel {settings.spec}"
        if self.photo is not None:
            kernel = check_psf(kernel, name, self.photo.shape)
        return kernel

    def describe(self, settings: Settings) -> dict:
        """The kernel's shape and picture, and the command line; for the page's kernel panel.

        >>> state = UiState(device="cpu")
        >>> sorted(state.describe(Settings("defocus", "defocus:4", None, 1.0)))
        ['command', 'picture', 'shape', 'spec']
        >>> state.close()
        """
        from pydeblur.ui.preview import kernel_picture

        kernel = self.kernel(settings)
        photo_name = self.photo.name if self.photo is not None else "PHOTO.png"
        kernel_name = self.kernel_file[1] if self.kernel_file is not None else None
        box = self.point[1] if self.point is not None else None
        return {
            "shape": list(kernel.shape),
            "spec": settings.spec,
            "picture": kernel_picture(kernel),
            "command": command_line(settings, photo_name, kernel_name, box, self.model_name),
        }

    # -- previews -----------------------------------------------------------------------------------

    def _next_ticket(self) -> int:
        with self._tickets:
            self._ticket += 1
            return self._ticket

    def preview(self, settings: Settings, engine: str, centre, size: int | None = None) -> dict:
        """The crop of `size` (default `preview_size`) around `centre` (x, y, photo pixels),
        deblurred by `engine` "wiener" (at once) or "network" (one at a time: one that a newer one
        replaced while it waited raises `Superseded`, one asked for during a whole-photo job
        `Busy`). Returns {"engine", "window", "image", "blurred", "noise_sigma", "seconds"}.

        >>> state = UiState(device="cpu")
        >>> state.preview(Settings("motion", "motion:9,0", None, 1.0), "wiener", (0, 0))
        Traceback (most recent call last):
        pydeblur.ui.state.NoPhoto: open a photo first
        >>> state.close()
        """
        from pydeblur.ui import preview as previews

        if engine not in ("wiener", "network"):
            raise ValueError(f"engine must be wiener or network, got {engine!r}")
        size = self.preview_size if size is None else size
        if not isinstance(size, int) or isinstance(size, bool) or not 16 <= size <= 1024:
            raise ValueError(f"preview size must be an integer in 16..1024, got {size!r}")
        photo = self._need_photo()
        kernel = self.kernel(settings)
        window = previews.window_around(photo.rgb.shape, centre, size)
        sigma = photo.noise if settings.noise is None else settings.noise
        start = time.perf_counter()
        if engine == "wiener":
            out = previews.wiener_preview(photo.rgb, kernel, window, sigma, settings.strength)
        else:
            ticket = self._next_ticket()
            while not self.lock.acquire(timeout=0.05):
                if self._busy():
                    raise Busy("the whole photo is being deblurred: the network preview waits")
                if ticket != self._ticket:
                    raise Superseded()
            try:
                if ticket != self._ticket:
                    raise Superseded()
                deblurrer = self.deblurrer(self.preview_precision)
                start = time.perf_counter()
                out = previews.network_preview(
                    deblurrer,
                    photo.rgb,
                    kernel,
                    window,
                    sigma,
                    settings.strength,
                    **photo.processing,
                )
            finally:
                self.lock.release()
        seconds = time.perf_counter() - start
        x, y, w, h = window
        return {
            "engine": engine,
            "precision": "float32" if engine == "wiener" else self.preview_precision,
            "window": list(window),
            "image": previews.png_data_url(out),
            "blurred": previews.png_data_url(photo.rgb[y : y + h, x : x + w]),
            "noise_sigma": round(float(sigma), 6),
            "seconds": round(seconds, 3),
        }

    # -- the whole photo ----------------------------------------------------------------------------

    def start_deblur(self, settings: Settings) -> DeblurJob:
        """Start deblurring the whole photo in the background (one job at a time).

        >>> state = UiState(device="cpu")
        >>> state.start_deblur(Settings("motion", "motion:9,0", None, 1.0))
        Traceback (most recent call last):
        pydeblur.ui.state.NoPhoto: open a photo first
        >>> state.close()
        """
        photo = self._need_photo()
        kernel = self.kernel(settings)
        if self._busy():
            raise Busy("the whole photo is already being deblurred")
        self._forget_results()
        job = DeblurJob(
            self.deblurrer(),
            photo.image,
            kernel,
            settings.noise,
            settings.strength,
            self.lock,
            **photo.processing,
        )
        self.job = job
        return job.start()

    def job_status(self, job_id: str) -> dict:
        """The status of job `job_id` (`NoSuchJob` when it is not the current one).

        >>> state = UiState(device="cpu")
        >>> state.job_status("job1")
        Traceback (most recent call last):
        pydeblur.ui.state.NoSuchJob: 'no such job: job1'
        >>> state.close()
        """
        return self._job(job_id).status()

    def _job(self, job_id: str) -> DeblurJob:
        if self.job is None or self.job.id != job_id:
            raise NoSuchJob(f"no such job: {job_id}")
        return self.job

    def result_file(self, job_id: str, form: str) -> tuple[Path, str]:
        """(the file in the workspace, its download name) of a finished job's result: form "png"
        (the photo's bit depth, 8 or 16; 16 for a float photo) or "tiff" (16-bit); written on the
        first request.

        >>> state = UiState(device="cpu")
        >>> state.result_file("job1", "png")
        Traceback (most recent call last):
        pydeblur.ui.state.NoSuchJob: 'no such job: job1'
        >>> state.close()
        """
        from pydeblur.io import write_image

        job = self._job(job_id)
        if form not in ("png", "tiff"):
            raise ValueError(f"the result's format must be png or tiff, got {form!r}")
        if job.state != "done":
            raise Busy(f"the job is {job.state}: {job.message}")
        if form not in self._written:
            photo = self._need_photo()
            suffix = ".png" if form == "png" else ".tif"
            integer = photo.sample_type in (np.uint8, np.uint16)
            dtype = photo.sample_type if form == "png" and integer else np.dtype(np.uint16)
            path = self.workspace.path(f"result-{form}", suffix)
            write_image(path, job.result, dtype)
            name = str(PurePath(output_name(photo.name)).with_suffix(suffix))
            self._written[form] = (path, name)
        return self._written[form]

    def _forget_results(self) -> None:
        for form in list(self._written):
            self.workspace.discard(f"result-{form}")
        self._written.clear()

    # -- what the page shows ------------------------------------------------------------------------

    def _photo_status(self) -> dict | None:
        photo = self.photo
        if photo is None:
            return None
        channels = 1 if photo.image.ndim == 2 else photo.image.shape[2]
        return {
            "name": photo.name,
            "width": photo.shape[1],
            "height": photo.shape[0],
            "channels": channels,
            "bits": 8 * photo.sample_type.itemsize,
            "noise_estimate": round(photo.noise, 6),
            "view_scale": self.view[1] if self.view else 1.0,
        }

    def status(self) -> dict:
        """What the page needs on loading: the photo, the kernels, the job, the limits.

        >>> state = UiState(device="cpu")
        >>> status = state.status()
        >>> status["preview_sizes"], status["device"]
        ([256, 384, 512], 'cpu')
        >>> state.close()
        """
        kernel_file = self.kernel_file
        point = self.point
        return {
            "photo": self._photo_status(),
            "kernel_file": None
            if kernel_file is None
            else {"name": kernel_file[1], "shape": list(kernel_file[0].shape)},
            "point_light": None
            if point is None
            else {"box": list(point[1]), "shape": list(point[0].shape)},
            "job": None if self.job is None else self.job.status(),
            "model": self.model_name,
            "device": str(self.device),
            "preview_size": self.preview_size,
            "preview_precision": self.preview_precision,
            "preview_sizes": sorted({*PREVIEW_SIZES, self.preview_size}),
            "max_pixels": self.max_pixels,
            "image_suffixes": list(IMAGE_SUFFIXES),
        }

    def close(self) -> None:
        """Remove the private folder and everything in it (a running job's result is dropped).

        >>> state = UiState(device="cpu"); state.close(); state.workspace.folder.exists()
        False
        """
        self.workspace.close()
