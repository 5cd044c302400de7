"""Build of pydeblur's C++/CUDA operator library `pydeblur._C`.

CPU kernels are always built. CUDA kernels are built when torch is a CUDA build, nvcc is found and a GPU
is visible, or when FORCE_CUDA=1 (no GPU needed); FORCE_CUDA=1 fails loudly when it cannot be done.
FORCE_CUDA=0 builds CPU kernels only. TORCH_CUDA_ARCH_LIST picks the GPU architectures.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def locate_cuda_home() -> None:
    """Point CUDA_HOME at the toolkit behind `nvcc`, which may be a wrapper script outside it.

    torch guesses CUDA_HOME as the parent of nvcc's folder: wrong when nvcc is /usr/local/bin/nvcc.
    """
    if os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or not shutil.which("nvcc"):
        return
    probe = ROOT / "build" / "probe.cu"
    probe.parent.mkdir(exist_ok=True)
    probe.write_text("")
    dry = subprocess.run(["nvcc", "--dryrun", "-c", str(probe)], capture_output=True, text=True)
    top = re.search(r"TOP=(\S+)", dry.stdout + dry.stderr)
    if top:
        os.environ["CUDA_HOME"] = str(Path(top.group(1)).resolve())


locate_cuda_home()

import torch  # noqa: E402
from setuptools import setup  # noqa: E402
from torch.utils.cpp_extension import (  # noqa: E402
    CUDA_HOME,
    BuildExtension,
    CppExtension,
    CUDAExtension,
)


def read_sources() -> list[str]:
    lines = (ROOT / "csrc" / "sources.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def cuda_toolkit_problem() -> str | None:
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is a CPU-only build"
    if CUDA_HOME is None or not (Path(CUDA_HOME) / "bin" / "nvcc").exists():
        return "nvcc was not found (set CUDA_HOME or put nvcc on PATH)"
    return None


def build_cuda() -> bool:
    force = os.environ.get("FORCE_CUDA", "")
    problem = cuda_toolkit_problem()
    if force == "0":
        return False
    if force == "1":
        if problem:
            raise SystemExit(f"FORCE_CUDA=1 but the CUDA kernels cannot be built: {problem}.")
        return True
    return problem is None and torch.cuda.is_available()


def missing_cuda_headers_dir() -> str | None:
    """A folder of links to the CUDA headers that torch includes but the toolkit lacks.

    Some toolkits ship without cusparse.h, cublas_v2.h and friends; torch's pip dependencies carry them
    (site-packages/nvidia/cu13/include, or nvidia/<lib>/include for CUDA 12). Only headers absent from
    the toolkit are linked, so the toolkit's own headers always win.
    """
    try:
        import nvidia
    except ImportError:
        return None
    toolkit = Path(CUDA_HOME) / "include"
    candidates = []
    for base in map(Path, nvidia.__path__):
        candidates += sorted(base.glob("cu*/include")) + sorted(base.glob("*/include"))
    links = ROOT / "build" / "cuda_missing_headers"
    shutil.rmtree(links, ignore_errors=True)
    links.mkdir(parents=True)
    for include in candidates:
        for entry in include.iterdir():
            target = links / entry.name
            if not (toolkit / entry.name).exists() and not target.exists():
                target.symlink_to(entry)
    return str(links) if any(links.iterdir()) else None


def write_build_info(with_cuda: bool) -> None:
    arch = os.environ.get("TORCH_CUDA_ARCH_LIST", "") if with_cuda else ""
    (ROOT / "pydeblur" / "_build_info.py").write_text(
        "# Written by setup.py at build time.\n"
        f"TORCH_VERSION = {torch.__version__!r}\n"
        f"WITH_CUDA = {with_cuda!r}\n"
        f"CUDA_ARCH_LIST = {arch!r}\n"
    )


def extension():
    with_cuda = build_cuda()
    sources = [s for s in read_sources() if with_cuda or not s.endswith(".cu")]
    include_dirs = [str(ROOT / "csrc" / "include")]
    cxx = ["-O3", "-fopenmp", "-fvisibility=hidden"]
    nvcc = ["-O3", "-lineinfo", "--expt-relaxed-constexpr"]
    write_build_info(with_cuda)
    if not with_cuda:
        print("pydeblur: building the CPU kernels only")
        return CppExtension(
            "pydeblur._C",
            sources,
            include_dirs=include_dirs,
            extra_compile_args={"cxx": cxx},
            extra_link_args=["-fopenmp"],
        )
    headers = missing_cuda_headers_dir()
    if headers:
        include_dirs.append(headers)
    print("pydeblur: building the CPU and CUDA kernels")
    return CUDAExtension(
        "pydeblur._C",
        sources,
        include_dirs=include_dirs,
        define_macros=[("PYDEBLUR_WITH_CUDA", "1")],
        extra_compile_args={"cxx": cxx, "nvcc": nvcc},
        extra_link_args=["-fopenmp"],
    )


setup(ext_modules=[extension()], cmdclass={"build_ext": BuildExtension})
