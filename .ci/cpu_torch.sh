#!/usr/bin/env bash
# The CPU-only torch build users without CUDA install (torch==2.13.0): a fresh environment, the
# extension built against it (no build isolation, so it links the installed torch), the operator and
# model tests.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .venv-ci-cpu build pydeblur/_C*.so pydeblur/_build_info.py
python3 -m venv .venv-ci-cpu
. .venv-ci-cpu/bin/activate
python -m pip install -q torch==2.13.0 setuptools wheel ninja numpy
FORCE_CUDA=0 python -m pip install -q --no-build-isolation -e ".[test]"
python -c "import torch; from pydeblur.ops import wiener_bank; print('torch', torch.__version__, 'ok')"
pytest -q -p no:cacheprovider tests/test_wiener_bank.py tests/test_bilateral_filter.py tests/test_ssim.py \
  tests/test_model.py tests/test_restore.py
