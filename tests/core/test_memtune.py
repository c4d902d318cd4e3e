"""The allocator policy (core/memtune.py): applied once on glibc, switched off by its variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

CODE = (
    "from imgfinder.core import memtune\n"
    "a = memtune.tune_allocator(); b = memtune.tune_allocator()\n"
    "import numpy as np; x = np.ones(50_000_000, np.uint8); del x  # a big block still works\n"
    "print(a, b)\n"
)


def _run(env_value: str | None) -> str:
    env = dict(os.environ)
    env.pop("IMGFINDER_MALLOC_TUNE", None)
    if env_value is not None:
        env["IMGFINDER_MALLOC_TUNE"] = env_value
    out = subprocess.run(
        [sys.executable, "-c", CODE], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt only")
def test_policy_is_taken_once_on_glibc_and_can_be_switched_off():
    libc = os.confstr("CS_GNU_LIBC_VERSION") if hasattr(os, "confstr") else None
    if not libc:
        pytest.skip("not glibc")
    assert _run(None) == "True True"
    assert _run("0") == "False False"


def test_cli_applies_it(monkeypatch):
    from imgfinder import cli  # noqa: PLC0415

    calls = []
    monkeypatch.setattr(cli, "tune_allocator", lambda: calls.append(1) or True)
    assert cli.main([]) == 0  # no command: the help text
    assert calls == [1]
