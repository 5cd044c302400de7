"""`pydeblur ui`'s HTTP API through Starlette's test client: every endpoint, every bad input the page
must survive (not an image, a huge image, a kernel larger than the image, a point-light box with no
source, an upload over the limit), the private folder, and the command itself (port, Ctrl-C)."""

import importlib
import inspect
import json
import os
import pkgutil
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import pydeblur
from pydeblur.kernels import motion
from pydeblur.metrics import image_psnr
from tests.helpers import REPO

pytest.importorskip("starlette", reason="pydeblur ui needs the ui extra (starlette, uvicorn)")
from starlette.testclient import TestClient  # noqa: E402

import pydeblur.ui  # noqa: E402
from pydeblur.ui import state as ui_state  # noqa: E402
from pydeblur.ui.server import create_app  # noqa: E402
from pydeblur.ui.settings import parse_settings  # noqa: E402

MOTION = {"kind": "motion", "length": 9, "angle": 30}
SETTINGS = {"kernel": MOTION, "noise": "auto", "strength": 1.0}
BLUR = motion(9, 30)


def blurred_demo(folder: Path, psf: np.ndarray = BLUR, size: tuple[int, int] | None = None):
    """The shipped demo photo blurred by `psf` as a camera blurs it (in linear light, with the
    paper's photon noise, fixed seed, then sRGB-encoded), as an 8-bit PNG in `folder`: (its path,
    the sharp photo aligned with it, HxWx3 float)."""
    from pydeblur.colour import linear_to_srgb, srgb_to_linear
    from pydeblur.degrade import degrade, valid_offset
    from pydeblur.io import read_image, write_image

    photo, _ = read_image(pydeblur.DEMO_PHOTO)
    if size is not None:
        kh, kw = psf.shape
        photo = photo[: size[0] + kh - 1, : size[1] + kw - 1]
    light = srgb_to_linear(np.ascontiguousarray(photo)).astype(np.float32)
    padded = torch.from_numpy(light).permute(2, 0, 1)[None]
    blurred = degrade(padded, torch.from_numpy(psf), generator=torch.Generator().manual_seed(0))
    blurred = linear_to_srgb(blurred.clamp(0, 1))
    top, left = valid_offset(*psf.shape)
    height, width = blurred.shape[-2:]
    sharp = photo[top : top + height, left : left + width]
    path = folder / "blurred.png"
    write_image(path, blurred[0].permute(1, 2, 0).clamp(0, 1).numpy())
    return path, sharp


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """A small blurred photo (8-bit PNG, 120x160) and the sharp one."""
    return blurred_demo(tmp_path_factory.mktemp("ui"), size=(120, 160))


@pytest.fixture
def client(tmp_path):
    app = create_app(device="cpu", temp_parent=tmp_path)
    with TestClient(app) as test_client:
        test_client.ui = app.state.ui
        yield test_client


def png_bytes(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", image)
    assert ok
    return data.tobytes()


def upload(client, path_or_bytes, name="photo.png"):
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    return client.post(f"/api/photo?name={name}", content=data)


def decode(data_url: str) -> np.ndarray:
    import base64

    raw = base64.b64decode(data_url.split(",", 1)[1])
    return cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_UNCHANGED)


def wait_for(client, job_id: str, timeout: float = 120) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        status = client.get(f"/api/jobs/{job_id}").json()
        if status["state"] in ("done", "failed"):
            return status
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not end in {timeout} s")


# -- the page and its assets --------------------------------------------------------------------------


def test_the_page_and_its_assets_are_served_locally_with_a_self_only_policy(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    for asset in re.findall(r'(?:src|href)="([^"]+)"', page.text):
        assert asset.startswith("/static/"), asset
        assert client.get(asset).status_code == 200
    for path in pydeblur.ui.STATIC.iterdir():  # nothing fetched from elsewhere: no URL at all
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", path.read_text()), path.name


def test_status_without_a_photo(client):
    status = client.get("/api/status").json()
    assert status["photo"] is None and status["job"] is None and status["device"] == "cpu"
    assert status["preview_size"] in status["preview_sizes"] and status["max_upload_bytes"] > 0
    for path, body in [("/api/preview", SETTINGS), ("/api/deblur", SETTINGS)]:
        answer = client.post(path, json=body)
        assert answer.status_code == 409 and answer.json() == {
            "error": "open a photo first",
            "no_photo": True,
        }
    assert client.get("/api/photo/view").status_code == 409


# -- the photo ------------------------------------------------------------------------------------------


def test_a_photo_opens_and_its_upload_is_removed(client, photo):
    path, sharp = photo
    answer = upload(client, path, "../../holiday/blurred.png")
    assert answer.status_code == 200, answer.text
    info = answer.json()
    assert (info["name"], info["width"], info["height"], info["bits"]) == (
        "blurred.png",
        160,
        120,
        8,
    )
    assert 0 < info["noise_estimate"] < 0.05
    assert client.get("/api/status").json()["photo"] == info
    view = client.get("/api/photo/view")
    assert view.headers["content-type"] == "image/png"
    assert cv2.imdecode(np.frombuffer(view.content, np.uint8), 1).shape == (120, 160, 3)
    folder = client.ui.workspace.folder
    assert folder.stat().st_mode & 0o777 == 0o700 and list(folder.iterdir()) == []


@pytest.mark.parametrize(
    "data, expected",
    [
        (b"this is not an image", "cannot read notes.png as an image"),
        (
            png_bytes(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8))[:3000],
            "notes.png: the image data is truncated",
        ),
        (b"", "notes.png: the file is empty"),
    ],
    ids=["not an image", "truncated", "empty"],
)
def test_a_file_that_is_not_an_image_is_refused_and_the_server_keeps_serving(
    client, photo, data, expected
):
    upload(client, photo[0])
    answer = upload(client, data, "notes.png")
    assert answer.status_code == 400 and answer.json()["error"].startswith(expected)
    assert str(client.ui.workspace.folder) not in answer.json()["error"]  # the client's name only
    assert client.get("/api/status").json()["photo"]["name"] == "photo.png"  # the old one stays
    assert list(client.ui.workspace.folder.iterdir()) == []


def test_a_huge_image_is_refused_from_its_header(tmp_path, photo):
    with TestClient(create_app(device="cpu", max_pixels=10_000, temp_parent=tmp_path)) as client:
        answer = upload(client, photo[0], "big.png")
        assert answer.status_code == 400
        message = answer.json()["error"]
        assert message.startswith("big.png: 160x120 is 0.0 megapixels, over the limit of 0.01")
        assert client.get("/api/status").status_code == 200


def test_an_upload_over_the_limit_is_refused_with_413_and_leaves_nothing(tmp_path, photo):
    limit = 2000
    app = create_app(device="cpu", max_upload_bytes=limit, temp_parent=tmp_path)
    with TestClient(app) as client:
        data = Path(photo[0]).read_bytes()
        assert len(data) > limit
        answer = upload(client, data, "big.png")  # Content-Length says so: refused unread
        assert answer.status_code == 413
        assert answer.json()["error"] == "big.png: the upload is over the 1.95312 KiB limit"

        def chunks():  # no Content-Length: refused once the limit is passed
            for start in range(0, len(data), 500):
                yield data[start : start + 500]

        answer = client.post("/api/photo?name=big.png", content=chunks())
        assert answer.status_code == 413
        answer = client.post("/api/kernel-file?name=k.npy", content=data)
        assert answer.status_code == 413
        assert list(app.state.ui.workspace.folder.iterdir()) == []
        assert client.get("/api/status").json()["photo"] is None


def test_no_path_from_the_client_is_opened(client, tmp_path):
    secret = tmp_path / "secret.npy"
    np.save(secret, np.ones((3, 3)))
    answer = client.post(f"/api/kernel-file?name={secret}", content=b"not a kernel")
    assert answer.status_code == 400  # the body was read, not the file the name names
    assert "secret.npy" in answer.json()["error"] and str(tmp_path) not in answer.json()["error"]
    answer = client.post("/api/kernel-file?name=/etc/passwd", content=b"root")
    assert answer.status_code == 400 and "unknown kernel file type" in answer.json()["error"]
    assert not list(client.ui.workspace.folder.iterdir())


def test_the_private_folder_is_removed_at_shutdown(tmp_path, photo):
    app = create_app(device="cpu", temp_parent=tmp_path)
    folder = app.state.ui.workspace.folder
    with TestClient(app) as client:
        upload(client, photo[0])
        job = client.post("/api/deblur", json=SETTINGS).json()
        assert wait_for(client, job["id"])["state"] == "done"
        assert client.get(f"/api/jobs/{job['id']}/result.png").status_code == 200
        assert [p.name for p in folder.iterdir()] == ["result-png.png"]
        assert folder.stat().st_mode & 0o777 == 0o700
    assert not folder.exists() and list(tmp_path.iterdir()) == []


def test_a_photo_given_on_the_command_line_opens_at_start(tmp_path, photo):
    with TestClient(create_app(photo[0], device="cpu", temp_parent=tmp_path)) as client:
        assert client.get("/api/status").json()["photo"]["name"] == "blurred.png"
    assert Path(photo[0]).is_file()  # the person's own file stays
    with pytest.raises(FileNotFoundError, match="no such image file"):
        create_app(tmp_path / "nope.png", device="cpu", temp_parent=tmp_path)
    assert list(tmp_path.iterdir()) == []


# -- kernels --------------------------------------------------------------------------------------------


def test_the_kernel_endpoint_draws_the_kernel_and_gives_the_command_line(client, photo):
    upload(client, photo[0], "my photo.png")
    answer = client.post("/api/kernel", json={**SETTINGS, "noise": 0.01, "strength": 1.5})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["shape"] == list(BLUR.shape) and body["spec"] == "motion:9,30"
    picture = decode(body["picture"])
    assert picture.shape == BLUR.shape and picture.max() == 255
    assert body["command"] == (
        "pydeblur deblur 'my photo.png' --psf motion:9,30 --noise 0.01 --strength 1.5 "
        "-o 'my photo_deblurred.png'"
    )
    for kernel, shape in [
        ({"kind": "defocus", "radius": 4}, [9, 9]),
        ({"kind": "gaussian", "sigma": 2, "sigma2": 0.5, "angle": 90}, [17, 5]),
    ]:
        assert client.post("/api/kernel", json={"kernel": kernel}).json()["shape"] == shape


@pytest.mark.parametrize(
    "body, expected",
    [
        ({"kernel": {"kind": "motion", "length": 0}}, "length must be >= 1 pixel, got 0"),
        ({"kernel": {"kind": "motion", "length": "long"}}, "kernel length must be a number"),
        ({"kernel": {"kind": "motion"}}, "kernel length is missing"),
        ({"kernel": {"kind": "swirl"}}, "kernel kind must be one of motion, defocus"),
        ({"kernel": {"kind": "defocus", "radius": 900}}, "over the 1001-pixel limit"),
        ({**SETTINGS, "noise": 2}, "noise must be auto or a number in [0, 1], got '2'"),
        ({**SETTINGS, "strength": 0}, "strength must be a positive number, got '0'"),
        ({"kernel": {"kind": "file"}}, "no kernel file yet: open one"),
        ({"kernel": {"kind": "point"}}, "no point light yet: draw a box around one"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_bad_settings_get_a_one_line_message_naming_them(client, body, expected):
    answer = client.post("/api/kernel", json=body)
    assert answer.status_code == 400 and expected in answer.json()["error"]
    assert "\n" not in answer.json()["error"]


def test_a_body_that_is_not_json_or_too_large_is_refused(client):
    answer = client.post("/api/kernel", content=b"{not json")
    assert answer.status_code == 400 and answer.json()["error"] == "the request body is not JSON"
    answer = client.post("/api/kernel", content=b" " * 100_000)
    assert answer.status_code == 400 and "64 KiB limit" in answer.json()["error"]


def test_a_kernel_larger_than_the_image_is_refused(client, tmp_path):
    upload(client, png_bytes(np.full((20, 30, 3), 128, np.uint8)), "small.png")
    answer = client.post("/api/kernel", json={"kernel": {"kind": "motion", "length": 41}})
    assert answer.status_code == 400
    assert answer.json()["error"] == (
        "kernel motion:41 of size 1x43 is larger than the image (20x30)"
    )
    for path in ("/api/preview", "/api/deblur"):
        assert (
            "larger than the image"
            in client.post(path, json={"kernel": {"kind": "motion", "length": 41}}).json()["error"]
        )
    big = tmp_path / "big.npy"
    np.save(big, np.ones((25, 25)))
    assert client.post("/api/kernel-file?name=big.npy", content=big.read_bytes()).status_code == 200
    answer = client.post("/api/kernel", json={"kernel": {"kind": "file"}})
    assert answer.json()["error"] == "big.npy of size 25x25 is larger than the image (20x30)"


def test_a_kernel_file_is_read_and_named_in_the_command(client, photo, tmp_path):
    upload(client, photo[0])
    answer = client.post("/api/kernel-file?name=shake.npy", content=pydeblur.DEMO_PSF.read_bytes())
    assert answer.json() == {"name": "shake.npy", "shape": [34, 34]}
    body = client.post("/api/kernel", json={"kernel": {"kind": "file"}}).json()
    assert body["shape"] == [34, 34]
    assert body["command"] == "pydeblur deblur photo.png --psf shake.npy -o photo_deblurred.png"
    negative = tmp_path / "negative.npy"
    np.save(negative, -np.ones((5, 5)))
    answer = client.post("/api/kernel-file?name=neg.npy", content=negative.read_bytes())
    assert answer.status_code == 400 and answer.json()["error"].startswith(
        "kernel in neg.npy has negative values"
    )
    answer = client.post("/api/kernel-file?name=k.npy", content=b"\x93NUMPY garbage")
    assert answer.status_code == 400 and "k.npy" in answer.json()["error"]
    assert list(client.ui.workspace.folder.iterdir()) == []


def star_photo() -> np.ndarray:
    """An 8-bit night sky (dark, a little noise) with one star streaked by motion(9, 0)."""
    rng = np.random.default_rng(0)
    sky = 0.06 + 0.004 * rng.standard_normal((96, 128, 3))
    sky[40:41, 60:71] += 0.8 * motion(9, 0)[0][:, None] * 4
    return np.round(np.clip(sky, 0, 1) * 255).astype(np.uint8)


def test_a_point_light_gives_the_kernel_and_a_box_without_one_is_refused(client):
    upload(client, png_bytes(star_photo()), "sky.png")
    answer = client.post("/api/point-light", json={"box": [50, 30, 31, 21]})
    assert answer.status_code == 200, answer.text
    info = answer.json()
    assert info["box"] == [50, 30, 31, 21] and info["shape"][0] <= 3 and info["snr"] > 20
    body = client.post("/api/kernel", json={"kernel": {"kind": "point"}}).json()
    assert body["shape"] == info["shape"]
    assert body["command"] == (
        "pydeblur psf --from-photo sky.png --box 50,30,31,21 -o sky_kernel.npy && "
        "pydeblur deblur sky.png --psf sky_kernel.npy -o sky_deblurred.png"
    )
    answer = client.post("/api/point-light", json={"box": [2, 2, 30, 30]})  # dark sky only
    assert answer.status_code == 400
    assert re.match(
        r"box 2,2,30,30: no (source above the noise|point light found)", answer.json()["error"]
    )
    for box, expected in [
        ([100, 80, 40, 40], "is not inside the 128x96 image"),
        ([1, 2, 3], "box must be four integers"),
        ("1,2,3,4", "box must be four integers"),
    ]:
        answer = client.post("/api/point-light", json={"box": box})
        assert answer.status_code == 400 and expected in answer.json()["error"], box
    assert client.get("/api/status").json()["point_light"]["box"] == [50, 30, 31, 21]


def test_the_command_line_shown_deblurs_as_the_page_does(client, photo, tmp_path):
    """The whole-photo result equals what the shown `pydeblur deblur` command writes."""
    from pydeblur.cli import main
    from pydeblur.io import read_image

    path, _ = photo
    source = tmp_path / "photo.png"
    source.write_bytes(Path(path).read_bytes())
    upload(client, source)
    settings = {**SETTINGS, "noise": 0.01, "strength": 1.5}
    command = client.post("/api/kernel", json=settings).json()["command"]
    job = client.post("/api/deblur", json=settings).json()
    assert wait_for(client, job["id"])["state"] == "done"
    page = client.get(f"/api/jobs/{job['id']}/result.png").content
    words = shlex.split(command)
    assert words[:2] == ["pydeblur", "deblur"]
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert main([*words[1:], "--device", "cpu"]) == 0
    finally:
        os.chdir(cwd)
    written = (tmp_path / "photo_deblurred.png").read_bytes()
    page_image = cv2.imdecode(np.frombuffer(page, np.uint8), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(
        page_image, cv2.imread(str(tmp_path / "photo_deblurred.png"), cv2.IMREAD_UNCHANGED)
    )
    assert read_image(tmp_path / "photo_deblurred.png")[0].shape == (120, 160, 3) and written


# -- previews -------------------------------------------------------------------------------------------


def test_previews_wiener_then_network_follow_the_kernel(client, photo):
    path, sharp = photo
    upload(client, path)
    precision = client.get("/api/status").json()["preview_precision"]
    assert precision in ("float32", "bfloat16")
    results = {}
    for length in (9, 21):
        settings = {**SETTINGS, "kernel": {**MOTION, "length": length}}
        for engine in ("wiener", "network"):
            body = {**settings, "engine": engine, "centre": [80, 60], "size": 64}
            answer = client.post("/api/preview", json=body)
            assert answer.status_code == 200, answer.text
            preview = answer.json()
            assert preview["engine"] == engine and preview["window"] == [48, 28, 64, 64]
            assert preview["seconds"] >= 0 and preview["noise_sigma"] > 0
            assert preview["precision"] == ("float32" if engine == "wiener" else precision)
            results[length, engine] = decode(preview["image"]).astype(np.float64)
            assert results[length, engine].shape == (64, 64, 3)
            assert decode(preview["blurred"]).shape == (64, 64, 3)
    for engine in ("wiener", "network"):  # a different kernel: a different picture
        assert np.abs(results[9, engine] - results[21, engine]).mean() > 1
    sharp_crop = sharp[28:92, 48:112, ::-1] * 255  # decode gives BGR
    for engine in ("wiener", "network"):  # the right kernel is the better one
        assert (
            np.abs(results[9, engine] - sharp_crop).mean()
            < np.abs(results[21, engine] - sharp_crop).mean()
        )
    default = client.post("/api/preview", json=SETTINGS).json()  # centre and size by default
    assert default["engine"] == "wiener" and default["window"] == [0, 0, 160, 120]


@pytest.mark.parametrize(
    "extra, expected",
    [
        ({"engine": "magic"}, "engine must be wiener or network, got 'magic'"),
        ({"size": 8}, "preview size must be an integer in 16..1024, got 8"),
        ({"size": "big"}, "preview size must be an integer in 16..1024, got 'big'"),
        ({"centre": "middle"}, "preview centre must be two numbers x, y, got 'middle'"),
    ],
)
def test_bad_preview_requests_are_refused(client, photo, extra, expected):
    upload(client, photo[0])
    answer = client.post("/api/preview", json={**SETTINGS, **extra})
    assert answer.status_code == 400 and answer.json()["error"] == expected


def test_a_network_preview_replaced_by_a_newer_one_is_dropped(photo, tmp_path):
    state = ui_state.UiState(device="cpu", temp_parent=tmp_path)
    try:
        target = state.upload_path("photo", "p.png", (".png",))
        target.write_bytes(Path(photo[0]).read_bytes())
        state.open_photo(target, "p.png")
        settings = parse_settings(SETTINGS)
        state.deblurrer()
        outcomes = {}

        def ask(name):
            try:
                outcomes[name] = state.preview(settings, "network", (80, 60), 32)["engine"]
            except ui_state.Superseded as error:
                outcomes[name] = str(error)

        with state.lock:  # the model is busy: both wait, the newer supersedes the older
            older = threading.Thread(target=ask, args=("older",))
            older.start()
            time.sleep(0.3)
            newer = threading.Thread(target=ask, args=("newer",))
            newer.start()
            time.sleep(0.3)
        older.join(60)
        newer.join(60)
        assert outcomes == {"older": "a newer preview was asked for", "newer": "network"}
    finally:
        state.close()


def test_a_network_preview_during_a_whole_photo_job_is_busy(client, photo):
    upload(client, photo[0])
    ui = client.ui
    job = ui_state.DeblurJob(ui.deblurrer(), np.zeros((32, 32)), np.ones((3, 3)))
    job.state = "running"  # as a job does while it holds the model
    ui.job = job
    with ui.lock:
        answer = client.post("/api/preview", json={**SETTINGS, "engine": "network"})
        assert answer.status_code == 409 and answer.json()["busy"] is True
        assert client.post("/api/deblur", json=SETTINGS).json()["busy"] is True
        assert upload(client, photo[0]).json()["busy"] is True
        wiener = client.post("/api/preview", json={**SETTINGS, "engine": "wiener"})
        assert wiener.status_code == 200  # the fast preview needs no model
    ui.job = None


# -- the whole photo --------------------------------------------------------------------------------------


def test_the_whole_photo_is_deblurred_with_progress_and_downloads(client, photo):
    path, sharp = photo
    upload(client, path)
    answer = client.post("/api/deblur", json=SETTINGS)
    assert answer.status_code == 202
    job = answer.json()
    assert job["state"] == "running" and 0 <= job["progress"] < 1
    seen = []
    while (status := client.get(f"/api/jobs/{job['id']}").json())["state"] == "running":
        seen.append(status["progress"])
        time.sleep(0.05)
    assert status["state"] == "done" and status["progress"] == 1.0 and status["seconds"] > 0
    assert seen == sorted(seen)
    assert client.get("/api/status").json()["job"]["state"] == "done"
    png = client.get(f"/api/jobs/{job['id']}/result.png")
    assert png.headers["content-type"] == "image/png"
    assert png.headers["content-disposition"] == 'attachment; filename="photo_deblurred.png"'
    tiff = client.get(f"/api/jobs/{job['id']}/result.tiff")
    assert tiff.headers["content-disposition"] == 'attachment; filename="photo_deblurred.tif"'
    eight = cv2.imdecode(np.frombuffer(png.content, np.uint8), cv2.IMREAD_UNCHANGED)
    sixteen = cv2.imdecode(np.frombuffer(tiff.content, np.uint8), cv2.IMREAD_UNCHANGED)
    assert eight.dtype == np.uint8 and sixteen.dtype == np.uint16 and sixteen.shape == (120, 160, 3)
    assert np.abs(sixteen / 257.0 - eight).max() <= 0.51
    restored = sixteen[..., ::-1] / 65535.0
    blurred = cv2.imread(str(path))[..., ::-1] / 255.0
    assert image_psnr(restored, sharp, 12) > image_psnr(blurred, sharp, 12) + 1


@pytest.mark.parametrize("kind", ["grey 16-bit TIFF", "RGBA PNG"])
def test_grey_sixteen_bit_and_alpha_photos_keep_their_form(client, photo, kind):
    blurred = cv2.imread(str(photo[0]))
    if kind == "grey 16-bit TIFF":
        grey = cv2.cvtColor(blurred, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257
        ok, data = cv2.imencode(".tif", grey)
        name, bits, channels, shape, dtype = "grey.tif", 16, 1, (120, 160), np.uint16
    else:
        alpha = np.full(blurred.shape[:2] + (1,), 200, np.uint8)
        ok, data = cv2.imencode(".png", np.dstack([blurred, alpha]))
        name, bits, channels, shape, dtype = "alpha.png", 8, 4, (120, 160, 4), np.uint8
    info = upload(client, data.tobytes(), name).json()
    assert ok and info["bits"] == bits and info["channels"] == channels
    preview = client.post("/api/preview", json={**SETTINGS, "engine": "network"}).json()
    assert decode(preview["image"]).shape == (120, 160, 3)
    job = client.post("/api/deblur", json=SETTINGS).json()
    assert wait_for(client, job["id"])["state"] == "done"
    png = client.get(f"/api/jobs/{job['id']}/result.png").content
    result = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    assert result.shape == shape and result.dtype == dtype
    if kind == "RGBA PNG":
        assert (result[..., 3] == 200).all()


def test_job_errors(client, photo):
    assert client.get("/api/jobs/job999").status_code == 404
    upload(client, photo[0])
    job = client.post("/api/deblur", json=SETTINGS).json()
    assert client.get(f"/api/jobs/{job['id']}/result.jpg").json()["error"] == (
        "the result's format must be png or tiff, got 'jpg'"
    )
    early = client.get(f"/api/jobs/{job['id']}/result.png")
    if early.status_code == 409:  # asked before it ended
        assert early.json()["busy"] is True and "the job is running" in early.json()["error"]
    assert wait_for(client, job["id"])["state"] == "done"
    assert client.get("/api/jobs/job999/result.png").status_code == 404


def test_a_failed_job_says_why(tmp_path):
    from pydeblur.restore import Deblurrer

    job = ui_state.DeblurJob(
        Deblurrer(device="cpu"), np.zeros((16, 16)), np.ones((3, 3)), strength=-1
    )
    status = job.start().wait(60).status()
    assert (
        status["state"] == "failed"
        and status["message"] == "strength must be a positive number, got -1"
    )


# -- the host check and the command ---------------------------------------------------------------------


def test_only_the_allowed_host_names_are_answered(tmp_path):
    app = create_app(device="cpu", allowed_hosts=["127.0.0.1", "localhost"], temp_parent=tmp_path)
    with TestClient(app, base_url="http://127.0.0.1:8765") as client:
        assert client.get("/api/status").status_code == 200
        assert client.get("/api/status", headers={"host": "evil.example:8765"}).status_code == 400


def test_the_command_parses_its_options():
    from pydeblur.cli import build_parser

    args = build_parser().parse_args(["ui"])
    assert (args.photo, args.port, args.host) == (None, 8765, "127.0.0.1")
    args = build_parser().parse_args(["ui", "p.png", "--port", "0", "--host", "::1"])
    assert (args.photo, args.port, args.host) == ("p.png", 0, "::1")


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["ui", "--port", "70000"], "--port must be 0..65535, got 70000"),
        (["ui", "--max-pixels", "-1"], "--max-pixels must be >= 0"),
        (["ui", "--max-upload-mb", "0"], "--max-upload-mb must be positive"),
        (["ui", "missing.png", "--port", "0"], "no such image file: missing.png"),
    ],
)
def test_the_command_refuses_bad_options_in_one_line(argv, expected, capsys):
    from pydeblur.cli import main

    assert main(argv) == 1
    assert f"pydeblur ui: error: {expected}" in capsys.readouterr().err


def test_a_port_in_use_is_one_line(capsys):
    from pydeblur.cli import main
    from pydeblur.cli.ui_cmd import listen

    taken = listen("127.0.0.1", 0)
    try:
        port = taken.getsockname()[1]
        assert main(["ui", "--port", str(port), "--device", "cpu"]) == 1
        error = capsys.readouterr().err
        assert f"cannot listen on 127.0.0.1:{port}: " in error and "choose another --port" in error
    finally:
        taken.close()


def test_the_command_serves_on_loopback_and_stops_cleanly_on_ctrl_c(tmp_path, photo):
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    process = subprocess.Popen(
        [sys.executable, "-m", "pydeblur", "ui", str(photo[0]), "--port", "0", "--device", "cpu"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        match = re.match(
            r"pydeblur ui: serving (http://127\.0\.0\.1:(\d+)/) \(Ctrl-C stops it\)", line
        )
        assert match, line + process.stderr.read()
        url = match.group(1)
        with urllib.request.urlopen(url + "api/status", timeout=30) as answer:
            assert json.load(answer)["photo"]["name"] == "blurred.png"
        with urllib.request.urlopen(url, timeout=30) as answer:
            assert b"<title>pydeblur</title>" in answer.read()
        assert [p.name for p in tmp_path.iterdir()][0].startswith("pydeblur-ui-")
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "pydeblur ui: stopped" in out and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # the private folder is gone


# -- the code's own rules ------------------------------------------------------------------------------


def test_every_public_function_and_class_of_the_ui_has_an_example():
    """tests/test_docstrings.py's rule, for the modules of pydeblur.ui (it walks only the top level)."""
    plumbing = {"add_parser", "run"}
    missing = []
    names = ["pydeblur.ui", "pydeblur.cli.ui_cmd"] + [
        info.name for info in pkgutil.iter_modules(pydeblur.ui.__path__, "pydeblur.ui.")
    ]
    assert {"pydeblur.ui.server", "pydeblur.ui.state", "pydeblur.ui.preview"} <= set(names)
    for module_name in names:
        module = importlib.import_module(module_name)
        for name, obj in vars(module).items():
            if name.startswith("_") or not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            if getattr(obj, "__module__", None) == module_name and name not in plumbing:
                if ">>>" not in (obj.__doc__ or ""):
                    missing.append(f"{module_name}.{name}")
    assert not missing, f"public names without a `>>>` example: {missing}"
