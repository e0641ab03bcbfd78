"""The aarch64 binary starts on the oldest userland we support.

Raspberry Pi OS bookworm has glibc 2.36, JetPack 5 (Ubuntu 20.04) glibc 2.31. Built
against Debian 12's glibc, a dynamic binary would need GLIBC_2.34 or later; ptxd links glibc
statically (.cargo/config.toml), so it needs none. This test reads the binary's ELF
headers and symbol versions, and runs it under qemu-user.
"""

import os
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("PTXD_AARCH64", REPO / "target/aarch64-unknown-linux-gnu/release/ptxd"))
OLDEST_GLIBC = (2, 31)  # JetPack 5 / Ubuntu 20.04


def readelf(*args):
    return subprocess.run(["readelf", *args, str(BINARY)], check=True, capture_output=True, text=True).stdout


def test_it_is_an_aarch64_executable_without_an_interpreter():
    header = readelf("-h")
    assert "AArch64" in header, header
    program = readelf("-lW")
    assert "INTERP" not in program, "dynamically linked: it needs the build machine's ld.so and glibc"


def test_no_glibc_symbol_newer_than_the_oldest_supported():
    symbols = readelf("--dyn-syms", "-W") + readelf("-V")
    versions = {tuple(map(int, v.split("."))) for v in re.findall(r"GLIBC_(\d+\.\d+(?:\.\d+)?)", symbols)}
    newest = max(versions, default=None)
    assert newest is None or newest[:2] <= OLDEST_GLIBC, f"needs GLIBC_{'.'.join(map(str, newest))}"


def test_it_runs_under_qemu_user():
    out = subprocess.run(["qemu-aarch64-static", str(BINARY), "--version"], check=True, capture_output=True, text=True)
    assert out.stdout.startswith("ptxd "), out.stdout
