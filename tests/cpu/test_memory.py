"""minitune.cpu.memory: the allocator tuning is applied on glibc, and never against the user's
own MALLOC_* settings or MINITUNE_MALLOC_TUNING=0."""
import ctypes.util

import pytest

from minitune.cpu import memory


def test_the_users_settings_win(monkeypatch):
    monkeypatch.setenv("MINITUNE_MALLOC_TUNING", "0")
    assert memory.tune_malloc() is False
    monkeypatch.delenv("MINITUNE_MALLOC_TUNING")
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")
    assert memory.tune_malloc() is False


@pytest.mark.skipif(ctypes.util.find_library("c") != "libc.so.6", reason="not glibc")
def test_applied_on_glibc(monkeypatch):
    for name in [n for n in __import__("os").environ if n.startswith("MALLOC_")]:
        monkeypatch.delenv(name)
    monkeypatch.delenv("MINITUNE_MALLOC_TUNING", raising=False)
    assert memory.tune_malloc() is True
