"""The HTTP side of `pydeblur ui`: a Starlette application serving the page (`static/`) and a small
JSON API over `pydeblur.ui.state.UiState` (docs/ui.md lists the endpoints).

Uploads are the request's raw body (the page sends the File itself, named by `?name=`), streamed
into the private workspace and refused past `max_upload_bytes` (413) before more is read; JSON bodies
are capped at `MAX_JSON_BYTES`. Errors answer {"error": "one line"}: 400 for bad input, 404 for an
unknown job, 409 when the request cannot be served now (no photo yet, the model busy, a preview
superseded), 413 for an upload over the limit. Every response forbids loading anything from
elsewhere (a Content-Security-Policy of 'self' only); the page uses nothing but its own files.
"""

from __future__ import annotations

import contextlib
import json

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from pydeblur.atomic import atomic_path
from pydeblur.io import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES
from pydeblur.kernel_io import KERNEL_SUFFIXES
from pydeblur.ui import STATIC
from pydeblur.ui.settings import parse_settings
from pydeblur.ui.state import Busy, NoPhoto, NoSuchJob, Superseded, UiState

DEFAULT_MAX_UPLOAD_BYTES = 512 * 2**20
MAX_JSON_BYTES = 64 * 2**10
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; script-src 'self'; style-src 'self'; "
        "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")


class UploadTooLarge(ValueError):
    """An upload over the server's size limit (answered 413).

    >>> str(UploadTooLarge("photo.png", 1024))
    'photo.png: the upload is over the 1 KiB limit'
    """

    def __init__(self, name: str, limit: int):
        size = f"{limit / 2**20:g} MiB" if limit >= 2**20 else f"{limit / 2**10:g} KiB"
        super().__init__(f"{name}: the upload is over the {size} limit")


def _error(status: int, message: str, **extra) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status, headers=SECURITY_HEADERS)


def _answer(function):
    """An endpoint whose errors become {"error": ...} answers; the server keeps serving."""

    async def endpoint(request: Request) -> Response:
        try:
            return await function(request)
        except UploadTooLarge as error:
            return _error(413, str(error))
        except NoPhoto as error:
            return _error(409, str(error), no_photo=True)
        except Superseded as error:
            return _error(409, str(error), superseded=True)
        except Busy as error:
            return _error(409, str(error), busy=True)
        except NoSuchJob as error:
            return _error(404, str(error.args[0]))
        except ValueError as error:
            return _error(400, " ".join(str(error).split()) or type(error).__name__)
        except Exception as error:  # noqa: BLE001 - the page says what went wrong; the server goes on
            message = " ".join(str(error).split()) or type(error).__name__
            return _error(500, f"internal error: {message}")

    endpoint.__name__ = function.__name__
    return endpoint


def _json(data) -> JSONResponse:
    return JSONResponse(data, headers=SECURITY_HEADERS)


async def _body_json(request: Request):
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_JSON_BYTES:
        raise ValueError(f"the request is over the {MAX_JSON_BYTES // 1024} KiB limit for settings")
    body = await request.body()
    if len(body) > MAX_JSON_BYTES:
        raise ValueError(f"the request is over the {MAX_JSON_BYTES // 1024} KiB limit for settings")
    try:
        return json.loads(body or b"{}")
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError("the request body is not JSON") from None


async def _receive(request: Request, path, name: str, limit: int) -> None:
    """Stream the request's body into `path` (atomically: whole or not at all), refusing more than
    `limit` bytes before reading them."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise UploadTooLarge(name, limit)
    size = 0
    with atomic_path(path) as tmp, open(tmp, "wb") as out:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise UploadTooLarge(name, limit)
            out.write(chunk)
    if size == 0:
        path.unlink(missing_ok=True)
        raise ValueError(f"{name}: the file is empty")


def _routes(state: UiState, max_upload_bytes: int) -> list:
    async def receive(request: Request, slot: str, path, name: str) -> None:
        """`_receive` into the workspace's `slot`, which is emptied when the upload fails."""
        try:
            await _receive(request, path, name, max_upload_bytes)
        except BaseException:
            state.workspace.discard(slot)
            raise

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers=SECURITY_HEADERS)

    @_answer
    async def status(request: Request) -> Response:
        return _json({**state.status(), "max_upload_bytes": max_upload_bytes})

    @_answer
    async def photo(request: Request) -> Response:
        name = request.query_params.get("name", "photo")
        path = state.upload_path("photo", name, IMAGE_SUFFIXES)
        await receive(request, "photo", path, name)
        return _json(await run_in_threadpool(state.open_photo, path, name))

    @_answer
    async def photo_view(request: Request) -> Response:
        if state.view is None:
            raise NoPhoto()
        return Response(state.view[0], media_type="image/png", headers=SECURITY_HEADERS)

    @_answer
    async def kernel_file(request: Request) -> Response:
        name = request.query_params.get("name", "kernel")
        path = state.upload_path("kernel", name, KERNEL_SUFFIXES)
        if not path.suffix:
            state.workspace.discard("kernel")
            raise ValueError(
                f"{name}: unknown kernel file type (expected one of {', '.join(KERNEL_SUFFIXES)})"
            )
        await receive(request, "kernel", path, name)
        return _json(await run_in_threadpool(state.open_kernel_file, path, name))

    @_answer
    async def point_light(request: Request) -> Response:
        body = await _body_json(request)
        box = body.get("box") if isinstance(body, dict) else None
        return _json(await run_in_threadpool(state.point_light, box))

    @_answer
    async def kernel(request: Request) -> Response:
        settings = parse_settings(await _body_json(request))
        return _json(await run_in_threadpool(state.describe, settings))

    @_answer
    async def preview(request: Request) -> Response:
        body = await _body_json(request)
        settings = parse_settings(body)
        centre = body.get("centre")
        if centre is None and state.photo is not None:
            height, width = state.photo.shape
            centre = (width / 2, height / 2)
        args = (settings, body.get("engine", "wiener"), centre, body.get("size"))
        return _json(await run_in_threadpool(state.preview, *args))

    @_answer
    async def deblur(request: Request) -> Response:
        settings = parse_settings(await _body_json(request))
        job = await run_in_threadpool(state.start_deblur, settings)
        return JSONResponse(job.status(), status_code=202, headers=SECURITY_HEADERS)

    @_answer
    async def job(request: Request) -> Response:
        return _json(state.job_status(request.path_params["job"]))

    @_answer
    async def result(request: Request) -> Response:
        job_id, form = request.path_params["job"], request.path_params["form"]
        path, name = await run_in_threadpool(state.result_file, job_id, form)
        media = "image/png" if form == "png" else "image/tiff"
        return FileResponse(path, media_type=media, filename=name, headers=SECURITY_HEADERS)

    return [
        Route("/", index),
        Route("/api/status", status),
        Route("/api/photo", photo, methods=["POST"]),
        Route("/api/photo/view", photo_view),
        Route("/api/kernel-file", kernel_file, methods=["POST"]),
        Route("/api/point-light", point_light, methods=["POST"]),
        Route("/api/kernel", kernel, methods=["POST"]),
        Route("/api/preview", preview, methods=["POST"]),
        Route("/api/deblur", deblur, methods=["POST"]),
        Route("/api/jobs/{job}", job),
        Route("/api/jobs/{job}/result.{form}", result),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]


def create_app(
    photo=None,
    *,
    model: str = "default",
    device: str = "auto",
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    preview_size: int | None = None,
    allowed_hosts: list[str] | None = None,
    temp_parent=None,
) -> Starlette:
    """The `pydeblur ui` application; its `UiState` is `app.state.ui` (closed at shutdown).

    photo: a photo file to open at once (the command line's, a path of the person running it);
    model, device, max_pixels, preview_size, temp_parent: as `UiState`'s; max_upload_bytes: the
    largest upload; allowed_hosts: the Host headers answered (None: any; the command passes the
    loopback names, so a page elsewhere cannot reach the server through DNS rebinding).

    >>> from starlette.testclient import TestClient
    >>> with TestClient(create_app(device="cpu")) as client:
    ...     client.get("/api/status").json()["photo"], client.get("/").status_code
    (None, 200)
    """
    if not isinstance(max_upload_bytes, int) or max_upload_bytes < 1:
        raise ValueError(f"max_upload_bytes must be a positive integer, got {max_upload_bytes!r}")
    state = UiState(model, device, max_pixels, preview_size, temp_parent)
    try:
        if photo is not None:
            state.open_photo(photo, str(photo), remove=False)
    except BaseException:
        state.close()
        raise

    @contextlib.asynccontextmanager
    async def lifespan(app):
        try:
            yield
        finally:
            state.close()

    middleware = []
    if allowed_hosts is not None:
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts))
    app = Starlette(
        routes=_routes(state, max_upload_bytes), middleware=middleware, lifespan=lifespan
    )
    app.state.ui = state
    return app
