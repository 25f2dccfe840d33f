"""``compile: true`` for restoration: the hot inference function through ``torch.compile``.

Inductor fuses the element-wise work between convolutions (leaky ReLU, FiLM shifts, masks, residual
sums) into the neighbouring kernels and, with ``freezing``, folds the weights into the graph as
constants, so on the CPU oneDNN gets pre-packed weights instead of repacking them every call. For
WaveFit-5 at full size that made a 10 s generator pass 1.37-1.45x faster on the CPU at equal output,
and whole restorations 1.05x (1 s files) to 1.16x (5 s files) faster than eager (benchmarks/README.md).
It compiles at the first call (25-70 s on 2 CPU cores at full size) and, with the dynamic shapes set
up below, never again for another length: it suits a corpus run, not one short file, so it is off by
default.

Frozen weights are constants: compile after the model is on its device and loaded, and do not train
it afterwards (restorers are inference-only). On the CPU Inductor builds C++ kernels, so it needs a
C++ compiler; ``check_compiler`` says so up front instead of failing inside the first call.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from typing import Any

import torch

from restorekit.errors import ConfigError

_COMPILERS = ("g++", "c++", "clang++")


def check_compiler(device: torch.device | str, who: str) -> None:
    """A ConfigError when ``device`` is a CPU and no C++ compiler is on PATH (Inductor needs one there)."""
    if torch.device(device).type != "cpu":
        return
    candidates = [c for c in (os.environ.get("CXX"), *_COMPILERS) if c]
    if not any(shutil.which(c) for c in candidates):
        raise ConfigError(
            f"{who}: compile=true needs a C++ compiler on the CPU (torch.compile builds C++ kernels), and none "
            f"of {candidates} is on PATH; install one (e.g. `apt install g++`), point $CXX at one, or set "
            "compile=false"
        )


def compile_for_inference(fn: Callable[..., Any], device: torch.device | str, who: str) -> Callable[..., Any]:
    """``fn`` compiled for inference on ``device``: dynamic shapes, weights frozen as constants. Compiles
    at the first call, once for every length (size-oblivious tracing, see below); a batch of more than
    one, or a masked one, is a second graph."""
    check_compiler(device, who)
    compiled = torch.compile(fn, dynamic=True, options={"freezing": True})

    def run(*args: Any) -> Any:
        # Choosing a convolution backend reads the input's sizes, and plain dynamic tracing turns that into
        # range guards (43 <= length <= 64, 171 <= length <= 256, ...): a fresh ~minute-long compile for
        # every few lengths of a corpus. Size-oblivious tracing records no such guards (measured: lengths
        # of 12 to 500 frames on one graph).
        with torch.fx.experimental._config.patch(backed_size_oblivious=True):
            return compiled(*args)

    return run
