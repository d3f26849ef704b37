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

# CI must exercise what the tests would otherwise skip on a bare machine, so under CI=true
# the system tools they drive are installed when missing (as root, or through sudo -n)
as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi
}

have_any() {
    local name
    for name in "$@"; do
        if command -v "$name" >/dev/null 2>&1; then return 0; fi
    done
    return 1
}

ci_tools() {
    [ "${CI:-}" = true ] || return 0
    local missing=()
    # the HTML report is checked in headless Chromium (GitHub's ubuntu runner has Chrome)
    have_any chromium chromium-browser google-chrome google-chrome-stable || missing+=(chromium)
    # the sandbox's network and filesystem tests (unshare -rn covers the network without it)
    have_any bwrap || missing+=(bubblewrap)
    if [ "${#missing[@]}" -gt 0 ]; then
        as_root apt-get update -q
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
    fi
    # a one-node SLURM for the executor's integration test: best effort, the test says
    # why it skipped when this cannot run here
    if [ "$(id -u)" = 0 ] && ! timeout 300 .ci/slurm-up >/dev/null 2>&1; then
        echo "run.sh: no one-node SLURM here (.ci/slurm-up failed); its test will skip" >&2
    fi
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

# bubblewrap gives candidates a read-only filesystem, a hidden .git and a PID namespace of
# their own (without it gitevo falls back to its Landlock floor): installed where this
# user may (root, or sudo without a password), else one line saying how
bubblewrap() {
    if command -v bwrap >/dev/null 2>&1; then return 0; fi
    if [ "$(id -u)" = 0 ] || sudo -n true 2>/dev/null; then
        if command -v apt-get >/dev/null 2>&1; then
            as_root apt-get update -q >/dev/null 2>&1 || true
            as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q bubblewrap \
                >/dev/null 2>&1 || true
        elif command -v dnf >/dev/null 2>&1; then
            as_root dnf install -y -q bubblewrap >/dev/null 2>&1 || true
        fi
    fi
    if command -v bwrap >/dev/null 2>&1; then
        echo "run.sh: installed bubblewrap, the strongest sandbox for candidates"
    else
        echo "run.sh: bubblewrap is not installed and could not be here (it needs root or" \
             "sudo -n, and apt-get or dnf): install it for the full sandbox; without it" \
             "candidates run under gitevo's Landlock floor (gitevo doctor says what holds)" >&2
    fi
}

case "${1:-}" in
    demo)
        setup "${TORCH[@]}"
        bubblewrap
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
        ci_tools
        shift
        "$VENV/bin/python" -m pytest -q "$@"
        ;;
    *)
        echo "usage: ./run.sh demo | ./run.sh test [pytest args]" >&2
        exit 2
        ;;
esac
