#!/usr/bin/env bash
# Every GPU figure in under 5 minutes: inference at batch 1 and saturation, Trainer examples/s.
# Writes benchmarks/results/gpu.json (or $OUT/gpu.json when OUT is set). Extra arguments go to gpu.py.
#   bash benchmarks/gpu.sh            # needs CUDA, torch, transformers, datasets (bash scripts/setup has them)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
"$PY" - <<'PY' || exit 2
import importlib.util, sys
missing = [m for m in ("torch", "transformers", "datasets", "accelerate") if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"gpu.sh: {sys.executable} lacks {', '.join(missing)}: run `bash scripts/setup` first")
import torch
if not torch.cuda.is_available():
    sys.exit("gpu.sh: CUDA is not available here (torch %s); for a CPU smoke run: "
             "python benchmarks/gpu.py --device cpu --quick" % torch.__version__)
print(f"gpu.sh: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
PY
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=true PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
out=()
[ -n "${OUT:-}" ] && out=(--out "$OUT/gpu.json")
exec timeout 300 "$PY" benchmarks/gpu.py "${out[@]}" "$@"
