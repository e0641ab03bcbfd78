#!/usr/bin/env bash
# Create (or update) the project's light Python environment, .venv-ci/ at the repo root:
# the packages of requirements-ci.txt (no torch), enough for the tests, the reference
# checks and the demo's phantom generator. Prints the interpreter's path.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
if [[ ! -x "$root/.venv-ci/bin/python" ]]; then
    python3 -m venv "$root/.venv-ci" >&2
fi
"$root/.venv-ci/bin/python" -m pip install -q --disable-pip-version-check \
    -r "$root/models/training/requirements-ci.txt" >&2
echo "$root/.venv-ci/bin/python"
