"""The real-photo benchmark (`training.realphoto`) under pytest: each feature on and off, side by side.

    pytest benchmarks/ -k realphoto --benchmark-only

One run of `training.realphoto.run` on the held-out test photos (timed once); its PSNR table goes into
the result's extra_info and is printed. The full table and its discussion: docs/deblur.md
(`python -m training.realphoto`). The test fails only where a feature the command turns on by default
makes its own condition worse: decoding sRGB on the sRGB files, the highlight mask on the photos with
blown highlights.
"""

import pytest

from training.realphoto import run
from training.train_data import DEFAULT_PHOTOS

pytestmark = pytest.mark.skipif(
    not DEFAULT_PHOTOS.is_dir(), reason=f"the training photos are not at {DEFAULT_PHOTOS}"
)


def test_realphoto_features_on_and_off(benchmark):
    benchmark.group = "realphoto (4 test photos, 3 conditions x 5 variants)"
    results = benchmark.pedantic(
        run, args=("default", 4), kwargs={"log": print}, rounds=1, iterations=1
    )
    benchmark.extra_info.update(results["conditions"])
    srgb, highlights = results["conditions"]["srgb-8bit"], results["conditions"]["highlights"]
    assert srgb["gamma srgb"] > srgb["as given (gamma linear, no mask, noise estimated)"]
    assert highlights["gamma srgb + clip mask"] > highlights["gamma srgb"]
