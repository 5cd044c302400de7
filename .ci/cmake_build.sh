#!/usr/bin/env bash
# Builds the operator library through CMake (the C++ tooling path), writes compile_commands.json and
# checks that the library loads. With a CUDA build of torch, torch's CMake config needs the CUDA toolkit:
# its root is taken from nvcc, and libraries the toolkit lacks (nvrtc) from torch's nvidia-* wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
args=(-DCMAKE_PREFIX_PATH="$(python -c 'import torch; print(torch.utils.cmake_prefix_path)')"
      -DPython3_EXECUTABLE="$(command -v python)")
if python -c 'import sys, torch; sys.exit(torch.version.cuda is None)' && command -v nvcc >/dev/null; then
  probe=$(mktemp --suffix=.cu)
  top=$(nvcc --dryrun -c "$probe" 2>&1 | sed -n 's/^#\$ TOP=//p' | head -n1)
  rm -f "$probe"
  root=$(cd "$top" && pwd)
  args+=(-DCUDA_TOOLKIT_ROOT_DIR="$root" -DCUDAToolkit_ROOT="$root")
  nvrtc=$(find "$root" -name 'libnvrtc.so*' 2>/dev/null | head -n1)
  if [ -z "$nvrtc" ]; then
    nvrtc=$(python - <<'PY'
import glob, os
try:
    import nvidia
except ImportError:
    raise SystemExit
hits = [p for base in nvidia.__path__ for p in sorted(glob.glob(os.path.join(base, "*", "lib", "libnvrtc.so*")))]
print(hits[0] if hits else "")
PY
)
  fi
  [ -n "$nvrtc" ] && args+=(-DCUDA_nvrtc_LIBRARY="$nvrtc")
fi
cmake -S . -B build/cmake -G Ninja "${args[@]}" >build/cmake-configure.log 2>&1 || {
  cat build/cmake-configure.log; exit 1; }
cmake --build build/cmake
test -f build/cmake/compile_commands.json
python - build/cmake/_C*.so <<'PY'
import sys, torch
torch.ops.load_library(sys.argv[1])
print("CMake-built library loads:", sys.argv[1])
PY
