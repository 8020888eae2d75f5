"""Fixtures of the kernel tests: the CPU emulator, built once per session."""
import shutil

import pytest

from minitune.cuda import emulator, source


@pytest.fixture(scope="session")
def emulated():
    """Build every kernel file for the CPU emulator (in parallel; cached by source hash).
    Skips without a C++ compiler."""
    if shutil.which(emulator.CXX) is None:
        pytest.skip(f"the CUDA emulator needs a C++20 compiler ({emulator.CXX!r} not found)")
    emulator.build_all(source.kernel_files())
    return emulator
