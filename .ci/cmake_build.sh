#!/usr/bin/env bash
# Builds the operator library through CMake (the C++ tooling path) and checks that it loads.
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=$(python -c 'import torch; print(torch.utils.cmake_prefix_path)')
cmake -S . -B build/cmake -G Ninja -DCMAKE_PREFIX_PATH="$prefix" -DPython3_EXECUTABLE="$(command -v python)" >/dev/null
cmake --build build/cmake
test -f build/cmake/compile_commands.json
library=$(ls build/cmake/_C*.so)
python - "$library" <<'PY'
import sys, torch
torch.ops.load_library(sys.argv[1])
print("CMake-built library loads; operators:", sorted(n for n in dir(torch.ops.pydeblur) if not n.startswith("_")))
PY
