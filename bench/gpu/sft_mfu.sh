#!/usr/bin/env bash
# GPU throughput check for the lent H200 (DEVELOPERS.md, device tool), one
# script: BLOOM-1b1 shapes with random weights, bf16, ZeRO-2, sequence 1024,
# through the real CLI (`python -m training_jobs run`). Prints tokens/s and
# model FLOPs utilisation (MFU) against the H200's dense bf16 peak.
#
#   here:   bash bench/gpu/prepare_wheels.sh
#   device: run(command="bash bench/gpu/sft_mfu.sh", carry=[".whl"], timeout_s=540)
#
# Shapes and sizes come from the environment so the flow can be tried on a
# CPU with a tiny model: LAYERS=2 HIDDEN=64 HEADS=4 VOCAB=2000 SEQ=128 MICRO=2 GLOBAL=4 STEPS=3 PRECISION=fp32 bash bench/gpu/sft_mfu.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
LAYERS=${LAYERS:-24} HIDDEN=${HIDDEN:-1536} HEADS=${HEADS:-16} VOCAB=${VOCAB:-250880}
SEQ=${SEQ:-1024} MICRO=${MICRO:-16} GLOBAL=${GLOBAL:-64} STEPS=${STEPS:-30} ZERO=${ZERO:-2} PRECISION=${PRECISION:-bf16}
PEAK_TFLOPS=${PEAK_TFLOPS:-989}   # H200 SXM dense bf16
PY=${PY:-python3}
if ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
WORK=${WORK:-/tmp/sft_mfu}
rm -rf "$WORK" && mkdir -p "$WORK"
OUT_DIR=${OUT:-$WORK}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi (CPU dry run)"
$PY -m training_jobs make-tiny-model --arch bloom --layers "$LAYERS" --hidden "$HIDDEN" --heads "$HEADS" \
    --vocab-size "$VOCAB" --out "$WORK/model" > /dev/null
# A corpus long enough for STEPS full steps of SEQ-token blocks (pt packs
# documents into exact SEQ-token blocks: every sequence is full length).
$PY - "$WORK" "$SEQ" "$GLOBAL" "$STEPS" <<'PYEOF'
import json, random, sys
from pathlib import Path
work, seq, global_batch, steps = Path(sys.argv[1]), *map(int, sys.argv[2:])
rng = random.Random(0)
words = ["空气炸锅", "洗衣机", "冰箱", "耳机", "口红", "羽绒服", "price", "warranty", "delivery", "退货", "优惠券", "容量"]
needed = seq * global_batch * (steps + 2) * 2  # the tiny tokenizer makes ≥ 1 token per char
with (work / "corpus.jsonl").open("w") as handle:
    written = 0
    while written < needed:
        text = "".join(rng.choice(words) for _ in range(200))
        handle.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
        written += len(text)
config = {
    "stage": "pt", "base_model": str(work / "model"), "train_data": str(work / "corpus.jsonl"),
    "output_dir": str(work / "out"), "max_length": seq, "global_batch_size": global_batch,
    "micro_batch_size": int(__import__("os").environ.get("MICRO", "16")), "learning_rate": 1e-5,
    "warmup_ratio": 0.0, "max_steps": steps, "precision": __import__("os").environ.get("PRECISION", "bf16"),
    "zero_stage": int(__import__("os").environ.get("ZERO", "2")), "log_every": 5, "seed": 0,
}
(work / "job.json").write_text(json.dumps(config))
PYEOF
NGPU=$($PY -c "import torch; print(max(torch.cuda.device_count(), 1))")
if [ "$NGPU" -gt 1 ] || [ "${USE_LAUNCHER:-0}" = 1 ]; then
  $PY -m deepspeed.launcher.runner --num_gpus "$NGPU" --module training_jobs run --config "$WORK/job.json" | tee "$WORK/run.log"
else
  $PY -m training_jobs run --config "$WORK/job.json" | tee "$WORK/run.log"
fi
$PY - "$WORK" "$SEQ" "$PEAK_TFLOPS" "$NGPU" <<'PYEOF'
import json, sys
from pathlib import Path
work, seq, peak, ngpu = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
model = json.loads((work / "model" / "tiny_model.json").read_text())
events = [json.loads(l) for l in (work / "out" / "progress.jsonl").read_text().splitlines()]
metrics = [e for e in events if e["event"] == "metrics"]
done = next(e for e in events if e["event"] == "done")["metrics"]
# Steady state: skip the first logged window (CUDA warm-up, allocator growth).
steady = [m["tokens_per_s"] for m in metrics[1:]] or [done["train_tokens_per_s"]]
tokens_per_s = sum(steady) / len(steady)
n, layers, hidden = model["parameters"], model["layers"], model["hidden"]
# Training FLOPs per token: 6N for the weights (forward + backward) plus
# 12·layers·hidden·seq for attention scores and values (Megatron-LM's formula).
flops_per_token = 6 * n + 12 * layers * hidden * seq
mfu = tokens_per_s * flops_per_token / (peak * 1e12 * ngpu)
result = {"parameters": n, "seq": seq, "gpus": ngpu, "tokens_per_s": round(tokens_per_s, 1),
          "whole_loop_tokens_per_s": done["train_tokens_per_s"], "tflops_per_gpu": round(tokens_per_s * flops_per_token / 1e12 / ngpu, 1),
          "mfu": round(mfu, 4), "final_loss": done["train_loss"]}
print("RESULT " + json.dumps(result))
PYEOF
cp "$WORK/out/progress.jsonl" "$OUT_DIR/" 2>/dev/null || true
