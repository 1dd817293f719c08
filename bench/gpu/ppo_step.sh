#!/usr/bin/env bash
# PPO step time on a lent H200 (device tool), one script: BLOOM-560m shapes
# with random weights (24 layers, hidden 1024, 16 heads, vocabulary 250,880),
# bf16, the seed's batch 16 with 256 prompt + 256 response tokens, LoRA r=32
# actor, through the real CLI (bench/ppo_step.py). Prints the split of a step
# into generation, experience scoring and training, and generate-only time
# per token with the LoRA adapter unmerged (as PPO samples) vs merged.
#
#   here:   bash bench/gpu/ppo_step.sh prepare     # .whl/: DeepSpeed, pydantic (prepare_wheels.sh) + PEFT, accelerate
#   device: run(command="bash bench/gpu/ppo_step.sh", carry=[".whl"], timeout_s=540)
#
# Sizes come from the environment so the flow can be tried on a CPU:
#   SIZES=tiny PROMPT=16 RESPONSE=16 PRECISION=fp32 STEPS=1 bash bench/gpu/ppo_step.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-python3}
if [ "${1:-}" = prepare ]; then
  PY=${PY_HERE:-.venv/bin/python} bash bench/gpu/prepare_wheels.sh
  # Pure-Python wheels PPO's LoRA actor needs that the device image lacks.
  .venv/bin/python -m pip download --quiet --no-deps --only-binary=:all: -d .whl peft==0.21.2 accelerate==1.15.0
  ls .whl
  exit 0
fi
SIZES=${SIZES:-560m} BATCH=${BATCH:-16} MICRO=${MICRO:-8} PROMPT=${PROMPT:-256} RESPONSE=${RESPONSE:-256}
STEPS=${STEPS:-3} WARMUP=${WARMUP:-1} PRECISION=${PRECISION:-bf16} ZERO=${ZERO:-2}
if ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi (CPU dry run)"
EXTRA=()
if ! $PY -c "import peft" 2>/dev/null; then
  echo "note: peft does not import here: full fine-tuning of the actor instead of LoRA"
  EXTRA+=(--full)
fi
OUT_JSON=${OUT:-/tmp}/ppo_step.json
$PY bench/ppo_step.py --sizes "$SIZES" --batch "$BATCH" --micro "$MICRO" --prompt "$PROMPT" --response "$RESPONSE" \
    --steps "$STEPS" --warmup "$WARMUP" --precision "$PRECISION" --zero "$ZERO" --json "$OUT_JSON" "${EXTRA[@]}"
echo "RESULT $(cat "$OUT_JSON" | tr -d '\n ')"
