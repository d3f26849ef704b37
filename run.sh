#!/usr/bin/env bash
# One entry point for a fresh machine with Python >= 3.10 and git:
#   ./run.sh demo   set up .venv, write the demo repository and run one generation
#   ./run.sh test   set up .venv (with test tools) and run the whole test suite
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
# torch is pinned: an unpinned install pulls several GB of CUDA wheels
TORCH=(torch==2.14.1 torchvision==0.29.1)

setup() {
    if [ ! -x "$VENV/bin/python" ]; then
        "$PYTHON" -m venv "$VENV"
    fi
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e ".[dev]" "$@"
}

case "${1:-}" in
    demo)
        setup "${TORCH[@]}"
        DEMO="${DEMO_DIR:-demo}"
        if [ ! -d "$DEMO/.git" ]; then
            "$VENV/bin/gitevo" init "$DEMO" --template "${TEMPLATE:-toy}"
        fi
        "$VENV/bin/gitevo" -C "$DEMO" generation --n "${N:-8}"
        "$VENV/bin/gitevo" -C "$DEMO" status
        ;;
    test)
        setup "${TORCH[@]}"
        shift
        "$VENV/bin/python" -m pytest -q "$@"
        ;;
    *)
        echo "usage: ./run.sh demo | ./run.sh test [pytest args]" >&2
        exit 2
        ;;
esac
