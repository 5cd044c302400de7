"""The prepared GPU scripts, run on the CPU so that a lent GPU is never spent debugging them."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.helpers import REPO

PHOTOS = REPO.parent / "shared" / "data" / "photos"


def test_gpu_check_script_parses():
    for script in ("gpu_check.sh", "gpu_train.sh", "fetch_gpu_wheels.sh"):
        subprocess.run(["bash", "-n", str(REPO / "benchmarks" / script)], check=True)


def _gpu_train(tmp_path, **env):
    """benchmarks/gpu_train.sh for 0.05 minutes on the CPU, on 8 of the training photos, at a tiny
    size: (its output folder, its completed process)."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for path in sorted(PHOTOS.glob("*.jpg"))[:8]:
        shutil.copy(path, photos)
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "DEVICE": "cpu",
        "BATCH": "2",
        "CROP": "48",
        "STEPS": "2",
        "WORKERS": "0",
        "VAL_CROPS": "2",
        "DATA": str(photos),
        **env,
    }
    out = tmp_path / "out"
    result = subprocess.run(
        ["bash", "benchmarks/gpu_train.sh", "0.05", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out, result


@pytest.mark.skipif(not PHOTOS.is_dir(), reason=f"the training photos are not at {PHOTOS}")
def test_gpu_train_script_leaves_a_small_checkpoint_and_prints_validation(tmp_path):
    out, result = _gpu_train(tmp_path)
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert rows and all("val_psnr" in row for row in rows)
    assert "stopped after --max-minutes" in result.stdout
    checkpoint = out / "stages.pt"
    assert checkpoint.exists() and checkpoint.stat().st_size < 16 * 1024**2
    assert (out / "stages.safetensors").exists()


@pytest.mark.skipif(not PHOTOS.is_dir(), reason=f"the training photos are not at {PHOTOS}")
def test_gpu_train_script_trains_the_hqs_network_on_a_time_budget(tmp_path):
    out, result = _gpu_train(tmp_path, FAMILY="hqs", HQS_STAGES="2", DEAD_LEAVES="2")
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert rows and "val_psnr" in rows[-1]
    assert "stopped after --max-minutes" in result.stdout
    assert (out / "hqs.pt").stat().st_size < 16 * 1024**2
    from pydeblur.hqs_io import load_hqs

    assert load_hqs(out / "hqs.safetensors").config.stages == 2
    args = json.loads((out / "train" / "args.json").read_text())
    assert (args["crop_candidates"], args["dead_leaves"]) == (32, 2)
    assert len(list((out / "train" / "dead_leaves").glob("*.png"))) == 2
