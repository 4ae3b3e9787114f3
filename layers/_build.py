"""Build-on-first-use of the C++/CUDA extensions of every layer family.

`load_extension` compiles the sources with `torch.utils.cpp_extension.load` the first
time they are needed (later runs reuse the cached build in `$TORCH_EXTENSIONS_DIR`,
rebuilding when a source changes) and returns the module; when the build fails it warns
once, in one line, and returns `None` so the caller falls back to its PyTorch reference.

CPU builds use the widest vector instructions this machine's torch dispatches to (AVX2 and
FMA where `torch.backends.cpu.get_cpu_capability()` reports AVX2 or AVX512; the environment
variable `ATEN_CPU_CAPABILITY=default` turns them off) and are cached under a name that says
so, so machines with different CPUs sharing one cache each build their own.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import sys
import warnings
from pathlib import Path
from types import ModuleType

_CACHE: dict[str, ModuleType | None] = {}
_FAILURES: dict[str, str] = {}

CPU_FLAGS = ["-O3", "-fopenmp"]
# torch's CPU capability -> (suffix of the build's name, compiler flags) on x86-64 with GCC or Clang
INSTRUCTION_SETS = {"AVX2": ("avx2", ["-mavx2", "-mfma"]), "AVX512": ("avx2", ["-mavx2", "-mfma"])}
CUDA_FLAGS = ["-O3", "-lineinfo", "--expt-relaxed-constexpr"]


class ExtensionUnavailable(RuntimeError):
    """An extension was required (`impl="extension"`) but cannot be built."""


def instruction_set() -> tuple[str, list[str]]:
    """`(suffix, flags)` of the vector instructions CPU builds use here; `("", [])` for none."""
    import torch

    if sys.platform == "win32" or platform.machine().lower() not in ("x86_64", "amd64"):
        return "", []
    return INSTRUCTION_SETS.get(torch.backends.cpu.get_cpu_capability(), ("", []))


def load_extension(name: str, sources: list[Path], cuda: bool) -> ModuleType | None:
    """Build (first call) and import the extension `name`; `None` if it cannot be built.

    A CPU build with vector instructions (`instruction_set`) that fails is retried without
    them, with a one-line warning; a build that fails without them warns once and gives None.
    """
    if name in _CACHE:
        return _CACHE[name]
    module = None
    vector_build = ("", []) if cuda else instruction_set()
    builds = [vector_build, ("", [])] if vector_build[0] else [("", [])]
    errors = []
    for suffix, flags in builds:
        try:
            module = _build(f"{name}_{suffix}" if suffix else name, sources, flags, cuda)
            break
        except Exception as error:  # compilers and loaders raise many types; all mean "unavailable"
            errors.append((suffix, _summary(str(error))))
    if module is None:
        reason = errors[-1][1]
        _FAILURES[name] = reason
        warnings.warn(f"farconv: cannot build the {name} extension ({reason}); using the PyTorch reference instead", stacklevel=3)
    elif errors:
        suffix, reason = errors[0]
        warnings.warn(f"farconv: the {suffix} build of the {name} extension failed ({reason}); built it without {suffix}", stacklevel=3)
    _CACHE[name] = module
    return module


def _build(name: str, sources: list[Path], flags: list[str], cuda: bool) -> ModuleType:
    # Importing cpp_extension on a machine without a GPU logs a warning that concerns only
    # CUDA builds; CPU builds are the normal case there.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    from torch.utils import cpp_extension

    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.NOTSET)
    if cuda:
        cpp_extension.CUDA_HOME = cuda_home() or cpp_extension.CUDA_HOME
    return cpp_extension.load(
        name=name,
        sources=[str(source) for source in sources],
        extra_cflags=CPU_FLAGS + flags,
        extra_ldflags=["-fopenmp"],
        extra_cuda_cflags=CUDA_FLAGS if cuda else None,
        verbose=os.environ.get("FARCONV_VERBOSE_BUILD") == "1",
    )


def _is_toolkit(path: Path) -> bool:
    libraries = [path / folder / "libcudart.so" for folder in ("lib64", "lib")]
    return (path / "include" / "cuda_runtime.h").is_file() and any(library.exists() for library in libraries)


def cuda_home() -> str | None:
    """The CUDA toolkit to build with: `$CUDA_HOME`, `$CUDA_PATH`, the one holding the
    `nvcc` on PATH, or `/usr/local/cuda`, whichever first has the runtime headers and
    library (an `nvcc` wrapper in `/usr/local/bin` must not make `/usr/local` the toolkit)."""
    nvcc = shutil.which("nvcc")
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")]
    candidates += [str(Path(os.path.realpath(nvcc)).parent.parent) if nvcc else None, "/usr/local/cuda"]
    return next((candidate for candidate in candidates if candidate and _is_toolkit(Path(candidate))), None)


def _summary(message: str) -> str:
    """The compiler's first error line when there is one, else the message's first line."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line]
    return (errors or lines or ["unknown error"])[0][:300]


def failure_reason(name: str) -> str | None:
    """Why `name` failed to build (after `load_extension` returned None)."""
    return _FAILURES.get(name)
