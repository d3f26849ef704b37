#!/usr/bin/env bash
# One entry point for a fresh machine with Python >= 3.10 and git:
#   ./run.sh demo   set up .venv, write the ExquisiteNetV2 demo repository, run one generation
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

# The HTML report's test renders the page in headless Chromium and CI must run it, so a CI
# machine without a browser gets Debian's chromium (GitHub's ubuntu runner has Chrome)
ci_browser() {
    local name sudo=()
    [ "${CI:-}" = true ] || return 0
    for name in chromium chromium-browser google-chrome google-chrome-stable; do
        if command -v "$name" >/dev/null 2>&1; then return 0; fi
    done
    if [ "$(id -u)" != 0 ]; then sudo=(sudo -n); fi
    "${sudo[@]}" apt-get update -q
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
}

# CIFAR-10 for the demo: $DATA if set; else the JPEG copy that this workplace keeps
# next to the checkout (unpacked once into the cache); else torchvision downloads it
demo_data() {
    local tarball cache
    tarball="$(cd .. && pwd)/shared/datasets/cifar10-jpeg.tar.gz"
    cache="${XDG_CACHE_HOME:-$HOME/.cache}/gitevo"
    if [ -n "${DATA:-}" ]; then
        echo "$DATA"
    elif [ -f "$tarball" ]; then
        if [ ! -d "$cache/cifar10-jpeg" ]; then
            # unpack beside it, then rename: an interrupted unpack leaves no half dataset
            mkdir -p "$cache"
            local tmp
            tmp="$(mktemp -d "$cache/.unpack.XXXXXX")"
            tar xzf "$tarball" -C "$tmp"
            mv "$tmp/cifar10-jpeg" "$cache/cifar10-jpeg"
            rmdir "$tmp"
        fi
        echo "$cache/cifar10-jpeg"
    else
        echo cifar10
    fi
}

case "${1:-}" in
    demo)
        setup "${TORCH[@]}"
        DEMO="${DEMO_DIR:-demo}"
        TEMPLATE="${TEMPLATE:-exquisitenetv2}"
        if [ ! -d "$DEMO/.git" ]; then
            args=()
            if [ "$TEMPLATE" = exquisitenetv2 ]; then args+=(--var "data=$(demo_data)"); fi
            if [ -n "${LLM:-}" ]; then args+=(--llm "provider=$LLM"); fi
            if [ -n "${MODEL:-}" ]; then args+=(--llm "model=$MODEL"); fi
            if [ -n "${BASE_URL:-}" ]; then args+=(--llm "base_url=$BASE_URL"); fi
            "$VENV/bin/gitevo" init "$DEMO" --template "$TEMPLATE" "${args[@]}"
        fi
        "$VENV/bin/gitevo" -C "$DEMO" generation --n "${N:-4}"
        "$VENV/bin/gitevo" -C "$DEMO" status
        ;;
    test)
        setup "${TORCH[@]}"
        ci_browser
        shift
        "$VENV/bin/python" -m pytest -q "$@"
        ;;
    *)
        echo "usage: ./run.sh demo | ./run.sh test [pytest args]" >&2
        exit 2
        ;;
esac
