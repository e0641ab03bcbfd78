#!/usr/bin/env bash
# The project's test command (README): installs what the tests need, then runs them all.
#   ./test.sh            everything
# Set PTXD_NO_INSTALL=1 to skip the install steps on a machine that already has them.
set -euo pipefail
cd "$(dirname "$0")"

if [[ -z "${PTXD_NO_INSTALL:-}" ]]; then
    # Python side: the synthesiser's tests and the checks of the shipped model files
    # (onnxruntime reproduces the reference vectors). No torch: training never runs here.
    models/training/setup-venv.sh >/dev/null
    # Debian packages: libclang for v4l's bindgen (build time); systemd-analyze to check the
    # unit's hardening (tests/deploy.rs)
    need=()
    for pkg in libclang1-14 libclang-common-14-dev systemd; do
        dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
    done
    if ((${#need[@]})); then
        apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    fi
    rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi
PY=${PTXD_PYTHON:-.venv-ci/bin/python}

echo "== python: models/training"
(cd models/training && "../../$PY" -m pytest -q tests)

echo "== rust: fmt, clippy, tests"
cargo fmt --check
cargo clippy --all-targets --quiet -- -D warnings
cargo test --quiet
