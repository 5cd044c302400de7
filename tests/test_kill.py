"""SIGKILL at random moments of a folder run, then one more run: every output whole, no leftovers."""

import os
import signal
import subprocess
import sys
import time

import numpy as np

from pydeblur.io import read_image, write_image
from tests.helpers import REPO, deblur_args


def _start(args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "pydeblur", *args]
    return subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def test_killed_folder_runs_leave_nothing_broken_and_a_rerun_completes(files, tmp_path):
    _, _, psf, weights = files
    rng = np.random.default_rng(0)
    photos = tmp_path / "photos"
    for index in range(16):
        write_image(photos / f"p{index:02d}.png", rng.random((64, 80, 3), dtype=np.float32))
    out = tmp_path / "out"
    args = deblur_args([photos], psf, out, weights)
    for _ in range(3):  # kill after the first output appears, at a random moment in the next 0.4 s
        process = _start(args)
        deadline = time.monotonic() + 60
        while not (out.exists() and any(out.glob("*.png"))) and time.monotonic() < deadline:
            if process.poll() is not None:
                break
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.4))
        process.send_signal(signal.SIGKILL)
        process.communicate()
        for written in out.glob("*.png"):  # what a kill left under an output name is whole
            assert read_image(written)[0].shape == (64, 80, 3), written
    done = _start(args)
    stdout, stderr = done.communicate(timeout=300)
    assert done.returncode == 0, stderr.decode()
    assert "deblurred 16 of 16 images" in stdout.decode()
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"p{index:02d}.png" for index in range(16)]  # nothing hidden left over
    for name in names:
        assert read_image(out / name)[0].shape == (64, 80, 3), name
