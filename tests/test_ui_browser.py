"""`pydeblur ui` end to end in headless Chromium (Debian's chromium, driven by Selenium through
Debian's chromedriver): the real server on a free port, a bad file refused in the page, a photo
loaded, the length slider moved, the preview's pixels changed, the whole photo deblurred and
downloaded, its PSNR against the sharp photo above the blurred input's.

Skipped, saying why, where Selenium, /usr/bin/chromium or /usr/bin/chromedriver is missing
(`.ci/run` installs them). With PYDEBLUR_UI_SCREENSHOT=PATH the page is saved there as a PNG at the
end (docs/figures/ui.png is made so).
"""

import base64
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from pydeblur.kernels import motion
from tests.helpers import REPO

CHROMIUM = Path(os.environ.get("PYDEBLUR_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("PYDEBLUR_CHROMEDRIVER", "/usr/bin/chromedriver"))
BLUR_LENGTH = 21  # the photo's blur: motion(21, 0); the page starts at length 15
PAGE_LENGTH = 15

pytest.importorskip("starlette", reason="pydeblur ui needs the ui extra (starlette, uvicorn)")
webdriver = pytest.importorskip(
    "selenium.webdriver", reason="selenium is not installed (pip install selenium)"
)
if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
    pytest.skip(
        f"Debian's chromium and chromium-driver are not installed ({CHROMIUM}, {CHROMEDRIVER}; "
        "apt-get install chromium chromium-driver)",
        allow_module_level=True,
    )

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from pydeblur.metrics import image_psnr  # noqa: E402
from tests.test_ui import blurred_demo  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path):
    """`pydeblur ui --port 0` in its own process; yields its URL; Ctrl-C at the end."""
    temp = tmp_path / "server-tmp"
    temp.mkdir()
    process = subprocess.Popen(
        [sys.executable, "-m", "pydeblur", "ui", "--port", "0", "--device", "cpu"],
        cwd=REPO,
        env={**os.environ, "TMPDIR": str(temp)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        match = re.match(r"pydeblur ui: serving (http://127\.0\.0\.1:\d+/)", line)
        assert match, line + process.stderr.read()
        yield match.group(1)
        assert process.poll() is None, "the server stopped during the test"
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
        assert process.returncode == 0, err
        assert list(temp.iterdir()) == []
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture
def browser(tmp_path):
    """Headless Chromium with no network of its own, downloads going to tmp_path/downloads."""
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    profile = tmp_path / "profile"
    profile.mkdir()
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--window-size=1400,1000",
    ):
        options.add_argument(flag)
    options.add_experimental_option(
        "prefs",
        {
            "download.default_directory": str(downloads),
            "download.prompt_for_download": False,
            "safebrowsing.enabled": False,
        },
    )
    # the driver given: Selenium Manager (which would look for a driver online) is not run
    service = Service(str(CHROMEDRIVER), popen_kw={"preexec_fn": _lift_address_space_limit})
    try:
        driver = webdriver.Chrome(service=service, options=options)
    except Exception:
        import resource

        if resource.getrlimit(resource.RLIMIT_AS)[1] != resource.RLIM_INFINITY:
            pytest.skip(
                "Chromium cannot start under a hard address-space limit (ulimit -v); "
                "use a soft one (ulimit -S -v) or none"
            )
        raise
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    driver.downloads = downloads
    try:
        yield driver
    finally:
        driver.quit()


def _lift_address_space_limit() -> None:
    """In the driver's process, before it starts: a soft limit on address space (`ulimit -S -v`)
    raised to the hard one. Chromium reserves tens of GB of address space it never touches (V8's
    pointer cage), so such a limit kills it at start; the memory it uses is unaffected."""
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (hard, hard))


def canvas_pixels(driver, element_id: str) -> np.ndarray:
    """The pixels of a canvas of the page, HxWx3 uint8 (BGR)."""
    url = driver.execute_script(f"return document.getElementById('{element_id}').toDataURL();")
    raw = base64.b64decode(url.split(",", 1)[1])
    return cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)


def network_preview_of_the_latest_change(driver) -> bool:
    """Whether the restored view shows the network's result for the page's latest change."""
    return driver.execute_script(
        "const c = document.getElementById('restored-view');"
        "return c.dataset.stage === 'network' && "
        "c.dataset.generation === document.body.dataset.generation;"
    )


def wait_for_download(folder: Path, suffix: str, timeout: float = 60) -> Path:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        done = [p for p in folder.iterdir() if p.suffix == suffix]
        if done and not any(p.suffix == ".crdownload" for p in folder.iterdir()):
            return done[0]
        time.sleep(0.2)
    raise AssertionError(f"no {suffix} file downloaded into {folder}: {list(folder.iterdir())}")


def test_find_the_kernel_by_eye_and_deblur_in_a_real_browser(server, browser, tmp_path):
    photo, sharp = blurred_demo(tmp_path, motion(BLUR_LENGTH, 0))
    notes = tmp_path / "notes.png"
    notes.write_text("this is not an image\n")
    wait = WebDriverWait(browser, 180)
    browser.get(server)
    assert browser.title == "pydeblur"

    # a file that is not an image: a clear message in the page, and the server keeps serving
    browser.find_element(By.ID, "photo-input").send_keys(str(notes))
    message = browser.find_element(By.ID, "message")
    wait.until(lambda _: message.is_displayed() and message.text)
    assert message.text.startswith("cannot read notes.png as an image")

    # the blurred photo; the page's first kernel is motion 15 px at 0 degrees
    browser.find_element(By.ID, "photo-input").send_keys(str(photo))
    wait.until(lambda driver: "blurred.png" in driver.find_element(By.ID, "photo-info").text)
    assert not message.is_displayed()
    wait.until(network_preview_of_the_latest_change)
    before = canvas_pixels(browser, "restored-view")
    assert browser.find_element(By.ID, "command").text.startswith(
        f"pydeblur deblur blurred.png --psf motion:{PAGE_LENGTH},0"
    )

    # the length slider moved to the photo's blur, by the keyboard as a person would
    slider = browser.find_element(By.ID, "motion-length")
    browser.execute_script("arguments[0].focus();", slider)  # a click would move it
    assert slider.get_attribute("value") == str(PAGE_LENGTH)
    for _ in range(BLUR_LENGTH - PAGE_LENGTH):
        slider.send_keys(Keys.ARROW_RIGHT)
    assert slider.get_attribute("value") == str(BLUR_LENGTH)
    assert browser.find_element(By.ID, "motion-length-out").text == str(BLUR_LENGTH)
    wait.until(network_preview_of_the_latest_change)
    after = canvas_pixels(browser, "restored-view")
    assert after.shape == before.shape
    assert np.abs(after.astype(float) - before.astype(float)).mean() > 1.0  # the preview changed
    command = browser.find_element(By.ID, "command").text
    assert f"--psf motion:{BLUR_LENGTH},0" in command

    # the whole photo, its progress bar, and its download
    browser.find_element(By.ID, "deblur-button").click()
    downloads = browser.find_element(By.ID, "downloads")
    wait.until(lambda _: downloads.is_displayed())
    progress = browser.find_element(By.ID, "progress")
    assert float(progress.get_attribute("value")) == 1.0
    assert browser.find_element(By.ID, "job-info").text.startswith("done in")
    browser.find_element(By.ID, "download-tiff").click()
    tiff = wait_for_download(browser.downloads, ".tif")
    assert tiff.name == "blurred_deblurred.tif"
    result = cv2.imread(str(tiff), cv2.IMREAD_UNCHANGED)
    assert result.dtype == np.uint16 and result.shape == sharp.shape
    restored = result[..., ::-1] / 65535.0
    blurred = cv2.imread(str(photo))[..., ::-1] / 255.0
    gain = image_psnr(restored, sharp, 12) - image_psnr(blurred, sharp, 12)
    assert gain > 2.0, f"PSNR gain {gain:.2f} dB"
    browser.find_element(By.ID, "download-png").click()
    png = wait_for_download(browser.downloads, ".png")
    assert cv2.imread(str(png), cv2.IMREAD_UNCHANGED).dtype == np.uint8

    shot = os.environ.get("PYDEBLUR_UI_SCREENSHOT")
    if shot:
        from pydeblur.atomic import write_bytes

        Path(shot).parent.mkdir(parents=True, exist_ok=True)
        wait.until(network_preview_of_the_latest_change)
        write_bytes(shot, browser.get_screenshot_as_png())


def test_the_page_loads_nothing_from_elsewhere(server, browser):
    """Every resource the page loaded came from the server itself."""
    browser.get(server)
    WebDriverWait(browser, 30).until(
        lambda driver: driver.find_element(By.ID, "preview-size").get_attribute("value")
    )
    entries = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name);"
    )
    assert entries and all(entry.startswith(server) for entry in entries), entries
