#!/usr/bin/env bash
# The accelerator benchmark in one command, for a fresh GPU machine (run from the repository root).
#
#   bash benchmarks/gpu.sh                       # CUDA, imagebind_huge: one table in at most ~8 minutes
#   bash benchmarks/gpu.sh --device cpu --model imagebind_tiny_test     # the CPU check (< 1 minute)
#   bash benchmarks/gpu.sh --fetch-wheels        # here, with PyPI: download the wheels the GPU machine lacks
#
# Any other option goes to benchmarks/device_bench.py (--steps, --batches, --budget, --json, ...).
#
# What it needs there: a python3 with a CUDA build of torch (the device images carry one) and
# bindspace's small pure dependencies. bindspace itself is used from src/ (PYTHONPATH), not
# pip-installed: installing it would make pip resolve torch again. Missing packages come, in
# this order, from .whl/ (wheels carried with the repository, see --fetch-wheels), from PyPI
# when it is reachable (bounded by a timeout), else their rows say what failed.
#
# Time: BINDSPACE_GPU_SECONDS (default 470) bounds the whole script; the benchmark gets what is
# left after setup as its --budget, and each of its steps has its own limit inside that.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
cd "$repo" || exit 1
start=$(date +%s)
total=${BINDSPACE_GPU_SECONDS:-470}
wheels="${BINDSPACE_WHEELS:-$repo/.whl}"
# bindspace's dependencies that a CUDA image may lack (torch, numpy, pillow, safetensors, regex and tqdm it
# has), with what they need in turn (soundfile: cffi, pycparser; ftfy: wcwidth).
needed=(av soundfile ftfy wcwidth cffi pycparser)

if [[ "${1:-}" == "--fetch-wheels" ]]; then
    # For a Python 3.12 x86-64 machine (the device image's); run here, where PyPI answers.
    mkdir -p "$wheels"
    python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform any -d "$wheels" "${needed[@]}" || exit 1
    ls -la "$wheels"
    echo "carry .whl with the repository (ignore it in git: echo /.whl/ >> .git/info/exclude)"
    exit 0
fi

python=${PYTHON:-python3}
if ! "$python" -c "import torch" 2>/dev/null; then
    echo "gpu.sh: $python has no torch; installing it from PyPI (a CUDA build on Linux)" >&2
    timeout 240 "$python" -m pip install --quiet torch || { echo "gpu.sh: no torch, giving up" >&2; exit 1; }
fi

missing=()
for module in "${needed[@]}"; do
    "$python" -c "import $module" 2>/dev/null || missing+=("$module")
done
if ((${#missing[@]})); then
    site="${TMPDIR:-/tmp}/bindspace-site"
    if compgen -G "$wheels/*.whl" >/dev/null; then
        "$python" -m pip install --quiet --no-index --no-deps --no-compile --target "$site" "$wheels"/*.whl \
            && export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
    else
        # Fail fast where no registry answers: a hanging pip would eat the run's minutes.
        timeout 90 "$python" -m pip install --quiet --timeout 5 --retries 0 --no-deps --target "$site" \
            "${missing[@]}" \
            && export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
    fi
    for module in "${missing[@]}"; do
        "$python" -c "import $module" 2>/dev/null || echo "gpu.sh: $module is not available; rows that need it fail" >&2
    done
fi
export PYTHONPATH="$repo/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

used=$(( $(date +%s) - start ))
budget=$(( total - used - 20 ))  # 20 s for the table and the child processes' exits
if ((budget < 60)); then
    echo "gpu.sh: setup took ${used} s; too little of ${total} s is left" >&2
    exit 1
fi
args=("$@")
json=()
if [[ -n "${OUT:-}" ]]; then
    json=(--json "$OUT/gpu_bench.json")
fi
timeout $(( total - used )) "$python" "$here/device_bench.py" --budget "$budget" "${json[@]}" "${args[@]}"
status=$?
echo "gpu.sh: whole run $(( $(date +%s) - start )) s (setup ${used} s), exit ${status}" >&2
exit $status
