#!/usr/bin/env bash
# GPU acceptance check of kptoolkit: pytest's CUDA tests, a micro bench on CUDA, paper-width
# training steps per generator and precision, torchrun (NCCL, DDP), animate / reconstruct, and
# CPU/CUDA parity of a fixed-seed run; each step timed, PASS or FAIL, then a summary.
#
#   python -m pip install -e ".[dev]"          # once, from the repository root
#   bash benchmarks/gpu_check.sh [OUT_DIR]      # OUT_DIR: new or empty; default a temp dir
#
# Exit status: 0 all steps passed, or no CUDA device (then nothing runs and one line says so);
# 1 a step failed; 2 bad arguments or a non-empty OUT_DIR; 3 torch or kptoolkit not importable.
# PYTHON=... picks the interpreter (default: python). The steps and their tolerances are
# described in benchmarks/scripts/gpu_check.py, which takes --only and --budget too.
set -euo pipefail

here="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python}"

if ! command -v "$python" >/dev/null 2>&1; then
    echo "gpu_check: no '$python' interpreter on PATH; set PYTHON=/path/to/python" >&2
    exit 3
fi

# the script resolves OUT_DIR against the caller's working directory and runs every step from
# the repository root
exec "$python" -u "$here/scripts/gpu_check.py" "$@"
