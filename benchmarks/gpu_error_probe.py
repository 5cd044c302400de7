"""Does an error raised by the extension's C++ checks reach Python, or kill the process?

On the lent H200 (2026-11-26: torch 2.11, Ubuntu's Python 3.12, CXX=/opt/gcc/bin/g++) every
TORCH_CHECK that fired inside pydeblur's operators ended the process with SIGSEGV, CPU kernels
included, while torch's own errors and a pybind11 extension built with the same compile flags raised
normally. This probe, run by benchmarks/gpu_check.sh, narrows that down in one call: the installed
extension, the same file without debug information, and small TORCH_LIBRARY extensions that differ
in one build flag each. Every case runs in its own process, so a crash is a result, not the end.

The operators' C++ checks raise with TORCH_CHECK_VALUE (ValueError in Python); the inline probes use
TORCH_CHECK (RuntimeError). Either is a normal outcome.
"""

import glob
import os
import shutil
import subprocess
import sys
import tempfile

# An even kernel_size, which the C++ check of pydeblur::bilateral_filter refuses.
BAD_CALL = "torch.ops.pydeblur.bilateral_filter(torch.rand(1, 3, 16, 16), 4, 0.1, 1.0)"

INSTALLED = f"import torch, pydeblur.ops\n{BAD_CALL}"

# Loads a copy of the extension (never beside the installed one: both would define the library).
COPY = "import sys, torch\ntorch.ops.load_library(sys.argv[1])\n" + BAD_CALL

INLINE = """
import sys, torch
from torch.utils.cpp_extension import load_inline
name, cflags, ldflags = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
source = '''
#include <torch/library.h>
at::Tensor boom(const at::Tensor& x) { TORCH_CHECK(x.dim() == 99, "probe error"); return x; }
TORCH_LIBRARY(NAME, m) { m.def("boom(Tensor x) -> Tensor"); }
TORCH_LIBRARY_IMPL(NAME, CPU, m) { m.impl("boom", &boom); }
'''.replace("NAME", name)
load_inline(name, cpp_sources=source, extra_cflags=cflags, extra_ldflags=ldflags,
            is_python_module=False)
getattr(torch.ops, name).boom(torch.ones(1))
"""

PACKAGE_FLAGS = "-O3 -fopenmp -fvisibility=hidden"
UBUNTU_LINK = "-Wl,-O1 -Wl,-Bsymbolic-functions"
VARIANTS = {
    "inline: the package's compile flags": (PACKAGE_FLAGS, "-fopenmp"),
    "inline: + -g": (PACKAGE_FLAGS + " -g", "-fopenmp"),
    "inline: + Ubuntu Python's link flags": (PACKAGE_FLAGS, "-fopenmp " + UBUNTU_LINK),
    "inline: + -g + Ubuntu's link flags": (PACKAGE_FLAGS + " -g", "-fopenmp " + UBUNTU_LINK),
}


def outcome(proc: subprocess.CompletedProcess) -> str:
    if proc.returncode < 0:
        return f"CRASH (signal {-proc.returncode})"
    last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    for error in ("ValueError", "RuntimeError"):
        if error in last and ("probe error" in last or "kernel_size" in last):
            return f"raises {error}"
    return f"exit {proc.returncode}: {last[:120]}"


def start(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen, timeout: float = 240) -> str:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return "timed out"
    return outcome(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))


def main() -> None:
    installed = finish(start(INSTALLED))
    print(f"| installed extension | {installed} |")
    if not installed.startswith("CRASH") and "--all" not in sys.argv:
        return
    running = {}
    library = glob.glob(os.path.join(os.path.dirname(__file__), "..", "pydeblur", "_C*.so"))
    if library and shutil.which("objcopy"):
        stripped = os.path.join(tempfile.mkdtemp(), "pydeblur_C_stripped.so")
        subprocess.run(["objcopy", "--strip-debug", library[0], stripped], check=True)
        running["installed extension, debug info stripped"] = start(COPY, stripped)
    for i, (label, (cflags, ldflags)) in enumerate(VARIANTS.items()):
        running[label] = start(INLINE, f"probe_{i}", cflags, ldflags)
    for label, proc in running.items():
        print(f"| {label} | {finish(proc)} |")


if __name__ == "__main__":
    main()
