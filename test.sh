#!/usr/bin/env bash
# The project's test command (README):
#   ./test.sh          everything, what CI runs: Python, then Rust on x86, the vendored tract
#                      patch (vendor/check.sh, tract's own tests of it), tract against
#                      onnxruntime (benches/onnxruntime_ratio.py, figures only), a short fuzz run
#                      of each parser (fuzz/run.sh, PTXD_FUZZ_SECONDS each, default 20), then
#                      the aarch64 build, its tests under qemu-user (the reference vectors on
#                      both int8 kernel paths, SDOT and SMLAL), with PTXD_DEB_TEST=1 (as root;
#                      CI sets it) the Debian packages installed on this machine
#                      (tests/deb/test_packages.sh), and the QEMU device test (an arm64
#                      guest booting ptxd)
#   ./test.sh quick    the Python tests, cargo fmt and the x86 tests only, no clippy (10.7
#                      minutes on 2 cores from a fresh clone, most of it the first build)
# It first makes the Python venv (.venv-ci/, always) and installs the Debian/Ubuntu packages
# it needs with apt. Root is needed for that install only: as another user it prints the
# apt command to run and stops, unless everything is there already. PTXD_NO_INSTALL=1 skips
# the apt step (the venv is still made).
set -euo pipefail
cd "$(dirname "$0")"
mode="${1:-all}"
case "$mode" in
    all | quick) ;;
    *)
        echo "usage: ./test.sh [quick]" >&2
        exit 2
        ;;
esac

# Python side: the synthesiser's tests and the checks of the shipped model files
# (onnxruntime reproduces the reference vectors). No torch: training never runs here.
PY=${PTXD_PYTHON:-$(models/training/setup-venv.sh)}
# tests/it/dicom_syntaxes.rs makes its DICOM files with it
export PTXD_PYTHON="$PY"

# Debian/Ubuntu packages:
# - libclang for v4l's bindgen (build time); systemd-analyze to score the unit (tests/it/deploy.rs);
# - for the full run, the aarch64 cross build (gcc, libc), qemu-user for its tests (the
#   static build; the dynamic one, package qemu-user, loads benches/instruction_mix.c), qemu-system and cpio for the QEMU device test, whose guest kernel and busybox are arm64
#   packages (tests/qemu).
install_packages() {
    # time: GNU time measures the decompression-bomb test's peak memory (tests/it/bombs.rs);
    # cmake and g++ build CharLS, the JPEG-LS decoder; dcmtk and libopenjp2-tools are the
    # independent encoders and the test modality (tests/it/dicom_syntaxes.rs, dicom_node.rs),
    # dicom3tools validates the results (dciodvfy), orthanc is the PACS of tests/it/pacs.rs
    # (curl queries its REST API)
    # mosquitto, mosquitto-clients and openssl: the broker, the subscriber and the test CA of
    # tests/it/mqtt.rs
    local want=(systemd time cmake g++ dcmtk libopenjp2-tools dicom3tools orthanc curl
        mosquitto mosquitto-clients openssl)
    # the Debian packages (deploy/deb/build.sh, tests/deb): help2man makes the man page,
    # reprepro and gnupg the signed repository the test installs from
    want+=(help2man reprepro gnupg)
    # patch: vendor/check.sh applies docs/upstream's tract patch to the published sources
    want+=(patch)
    # Debian 12 names libclang by version; elsewhere (Ubuntu, Debian 13) libclang-dev
    # pulls the distribution's own
    if apt-cache show libclang1-14 >/dev/null 2>&1; then
        want+=(libclang1-14 libclang-common-14-dev)
    else
        want+=(libclang-dev)
    fi
    if [[ $mode == all ]]; then
        want+=(gcc-aarch64-linux-gnu g++-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static
            qemu-user qemu-system-arm cpio)
    fi
    local need=()
    for pkg in "${want[@]}"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
    done
    local arm64=
    if [[ $mode == all ]] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
        arm64=yes
    fi
    if ((${#need[@]} == 0)) && [[ -z $arm64 ]]; then
        return
    fi
    if ((EUID != 0)); then
        echo "test.sh: missing Debian packages: ${need[*]}${arm64:+ (and the arm64 architecture)}" >&2
        echo "install them as root, then run ./test.sh again:" >&2
        [[ -n $arm64 ]] && echo "  sudo dpkg --add-architecture arm64" >&2
        echo "  sudo apt-get update && sudo apt-get install --no-install-recommends ${need[*]}" >&2
        exit 1
    fi
    [[ -n $arm64 ]] && dpkg --add-architecture arm64
    apt-get update -qq
    if ((${#need[@]})); then
        apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    fi
}

if [[ -z "${PTXD_NO_INSTALL:-}" ]]; then
    install_packages
    rustup component add rustfmt clippy >/dev/null 2>&1 || true
    if [[ $mode == all ]]; then
        rustup target add aarch64-unknown-linux-gnu >/dev/null 2>&1
    fi
fi

echo "== python: models/training"
(cd models/training && "$PY" -m pytest -q tests)

echo "== rust: fmt, clippy, tests"
cargo fmt --check
# clippy checks every crate again (minutes of tract): the full run's, not the quick one's
if [[ $mode == all ]]; then
    cargo clippy --all-targets --quiet -- -D warnings
fi
cargo test --quiet

if [[ $mode == quick ]]; then
    echo "== quick: done (the aarch64 build and the QEMU tests run in ./test.sh)"
    exit 0
fi

echo "== tract: vendor/ is crates.io's 0.23.9 plus docs/upstream's patch; tract's own tests of it"
vendor/check.sh
# each crate with its own lock file and dev-dependencies, as upstream tests it, the tests of the
# modules the patch touches, the patch's new tests among them. tract-core calls the patched
# tract-linalg (as upstream's workspace builds it): a copy of both, so that the patch entry's
# lock-file change stays out of vendor/
vendor_tests=$PWD/target/vendor-tests
vendor_copy=$(mktemp -d)
cp -r vendor/tract-core vendor/tract-linalg "$vendor_copy/"
(cd "$vendor_copy/tract-core" && CARGO_TARGET_DIR=$vendor_tests cargo test --quiet --lib \
    --config 'patch.crates-io.tract-linalg.path="../tract-linalg"' -- \
    ops::quant ops::cnn::conv ops::matmul::quant ops::einsum)
rm -rf "$vendor_copy"
(cd vendor/tract-linalg && CARGO_TARGET_DIR=$vendor_tests cargo test --quiet --lib -- frame::pack)

echo "== bench: tract against onnxruntime on the shipped files, same input, same run"
# figures for the log (docs/performance.md), not a pass/fail: machines here are noisy
"$PY" benches/onnxruntime_ratio.py --ptxd target/debug/ptxd --runs 1

echo "== fuzz: each parser for ${PTXD_FUZZ_SECONDS:-20} s (fuzz/run.sh; nightly and cargo-fuzz)"
if [[ -z "${PTXD_NO_INSTALL:-}" ]]; then
    rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal >/dev/null || true
    command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --quiet || true
fi
if rustup toolchain list | grep -q '^nightly' && command -v cargo-fuzz >/dev/null; then
    PY="$PY" fuzz/run.sh "${PTXD_FUZZ_SECONDS:-20}"
else
    echo "== fuzz: SKIPPED, the nightly toolchain or cargo-fuzz could not be installed here" >&2
fi

echo "== aarch64: release build, tests under qemu-user, static glibc"
A64=aarch64-unknown-linux-gnu
cargo build --quiet --release --target $A64
# tests that spawn the ptxd binary run above on x86 (no binfmt_misc here to run an aarch64
# child); these exercise tract's aarch64 int8 kernels, the serial link over ptys, the journal.
# qemu-user emulates a Cortex-A76 first (dot product: tract's SDOT int8 kernel, the Pi 5's and
# Orin's path), then the reference vectors again as a Cortex-A72 (none: the SMLAL kernel, the
# Pi 4's); PTXD_EXPECT_CPU makes the test fail if tract took the other path
QEMU_CPU=cortex-a76 PTXD_EXPECT_CPU=+dotprod cargo test --quiet --release --target $A64 --lib
QEMU_CPU=cortex-a76 PTXD_EXPECT_CPU=+dotprod cargo test --quiet --release --target $A64 --test it -- \
    reference_vectors:: serial_link:: journal:: render:: serial_protocol:: decode_robustness:: \
    dicom_syntaxes::
QEMU_CPU=cortex-a72 PTXD_EXPECT_CPU=-dotprod cargo test --quiet --release --target $A64 --test it -- \
    reference_vectors::
# the tract patch's packing tests on aarch64 too (its NEON interleave)
(cd vendor/tract-linalg && QEMU_CPU=cortex-a76 CARGO_TARGET_DIR=$vendor_tests cargo test --quiet --lib \
    --target $A64 -- frame::pack)
# the instruction counter behind the boards' budgets (docs/performance.md), checked on a loop of
# known instructions; the counts themselves are a manual run (benches/instruction_counts.py)
"$PY" benches/instruction_counts.py --self-check
export PTXD_AARCH64=target/$A64/release/ptxd
"$PY" -m pytest -q tests/qemu/test_binary.py

if [[ -n "${PTXD_DEB_TEST:-}" ]]; then
    # installs the packages on this machine (as root): CI's machine is thrown away after
    echo "== packages: build, install, upgrade, a signed repository (tests/deb)"
    tests/deb/test_packages.sh target/debug/ptxd "$PTXD_AARCH64"
fi

echo "== aarch64: the QEMU device test (tests/qemu)"
"$PY" -m pytest -q tests/qemu/test_device.py
