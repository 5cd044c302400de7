"""The 4-stage HQSNet on one 256x256 RGB image (34x34 PSF), the filter power as 24 FFTs per stage
(pydeblur/hqs.py of commit 1902bf9) against one (now), NCHW and channels-last weights, interleaved
in one process, min of 5: PYTHONPATH=. python benchmarks/results/2026-12-07-hqs-inference/filter_power_256.py
"""

import copy
import importlib.util
import subprocess
import tempfile
import time

import torch

from pydeblur.hqs import HQSConfig, HQSNet

source = subprocess.run(
    ["git", "show", "1902bf9:pydeblur/hqs.py"], capture_output=True, text=True, check=True
).stdout
with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
    f.write(source)
spec = importlib.util.spec_from_file_location("hqs_before", f.name)
before = importlib.util.module_from_spec(spec)
spec.loader.exec_module(before)

torch.manual_seed(0)
now = HQSNet(HQSConfig(stages=4)).eval()
for stage in now.stages:
    torch.nn.init.normal_(stage.cnn.convs[-1].weight, std=1e-3)
old = before.HQSNet(before.HQSConfig(stages=4)).eval()
old.load_state_dict(now.state_dict())
models = {
    "one FFT": now,
    "24 FFTs": old,
    "one FFT, channels-last": copy.deepcopy(now).to(memory_format=torch.channels_last),
    "24 FFTs, channels-last": copy.deepcopy(old).to(memory_format=torch.channels_last),
}
blurred, psf = torch.rand(1, 3, 256, 256), torch.rand(1, 1, 34, 34)
psf /= psf.sum()
best = {}
with torch.no_grad():
    for model in models.values():
        model(blurred, psf)
    for _ in range(5):
        for name, model in models.items():
            start = time.perf_counter()
            model(blurred, psf)
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - start)
for name, seconds in best.items():
    print(f"{name}: {seconds:.3f} s")
