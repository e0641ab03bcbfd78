#!/usr/bin/env bash
# The project's test command (README): installs what the tests need, then runs them all:
# Python, then Rust on x86, then the aarch64 build, its tests under qemu-user, and the QEMU
# device test (an arm64 guest booting ptxd).
#   ./test.sh            everything
# Set PTXD_NO_INSTALL=1 to skip the install steps on a machine that already has them.
set -euo pipefail
cd "$(dirname "$0")"

if [[ -z "${PTXD_NO_INSTALL:-}" ]]; then
    # Python side: the synthesiser's tests and the checks of the shipped model files
    # (onnxruntime reproduces the reference vectors). No torch: training never runs here.
    models/training/setup-venv.sh >/dev/null
    # Debian packages:
    # - libclang for v4l's bindgen (build time); systemd-analyze to score the unit (tests/deploy.rs);
    # - the aarch64 cross build (gcc, libc), qemu-user for its tests, qemu-system and cpio for
    #   the QEMU device test, whose guest kernel and busybox are arm64 packages (tests/qemu).
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
        dpkg --add-architecture arm64
        updated=
    fi
    need=()
    for pkg in libclang1-14 libclang-common-14-dev systemd gcc-aarch64-linux-gnu \
        libc6-dev-arm64-cross qemu-user-static qemu-system-arm cpio; do
        dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
    done
    if ((${#need[@]})) || [[ -v updated ]]; then
        apt-get update -qq
    fi
    if ((${#need[@]})); then
        apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    fi
    rustup component add rustfmt clippy >/dev/null 2>&1 || true
    rustup target add aarch64-unknown-linux-gnu >/dev/null 2>&1
fi
PY=${PTXD_PYTHON:-.venv-ci/bin/python}

echo "== python: models/training"
(cd models/training && "../../$PY" -m pytest -q tests)

echo "== rust: fmt, clippy, tests"
cargo fmt --check
cargo clippy --all-targets --quiet -- -D warnings
cargo test --quiet

echo "== aarch64: release build, tests under qemu-user, static glibc"
A64=aarch64-unknown-linux-gnu
cargo build --quiet --release --target $A64
# tests that spawn the ptxd binary run above on x86 (no binfmt_misc here to run an aarch64
# child); these exercise tract's aarch64 int8 kernels, the serial link over ptys, the journal
cargo test --quiet --release --target $A64 --lib --test reference_vectors --test serial_link \
    --test journal --test render --test serial_protocol --test decode_robustness
export PTXD_AARCH64=target/$A64/release/ptxd
"$PY" -m pytest -q tests/qemu/test_binary.py

echo "== aarch64: the QEMU device test (tests/qemu)"
"$PY" -m pytest -q tests/qemu/test_device.py
