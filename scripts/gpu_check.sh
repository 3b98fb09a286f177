#!/usr/bin/env bash
# The prepared GPU check: one call of under 10 minutes for a session that is lent a GPU.
#
#   bash scripts/gpu_check.sh DATA_ROOT OUT [DEADLINE_SECONDS]
#
# Everything ends DEADLINE_SECONDS (default 560) after the start, packed into OUT:
#   results.tgz.part-*   logs, eval JSON, sampling tables, run folders without checkpoints and older grids
#   models.tar.part-*    the fp16 inference exports (split at 15 MB: `cat models.tar.part-* | tar x`)
# What the first lent GPU taught (2026-11-27, H200, docs/performance.md): seven runs side by side each get
# about 7 steps/s (the small networks are launch-bound), and 150 s of reserve measures only 2 to 4 rows
# of a 10,000-sample sampling table; the throughput benches need about a minute each.
# Phases, in order:
#   1. env.txt             GPU, torch, a bf16 matrix product's TFLOP/s (the ceiling)
#   2. throughput-*.txt    bench.throughput beside the PyTorch tutorial, fp32 and bf16, alone on the GPU,
#                          then ddpm/flow at their default width (images/s, peak memory)
#   3. in parallel, each time-boxed to end EVAL_RESERVE s before the deadline, then measured:
#      ddpm, flow          class-conditional, width 24 (the explorer's CPU budget), batch 256; then
#                          scripts/sampling_table.py on the fp16 export: 10,000 samples per guidance x steps
#      dcgan-g128/-g96     the MNIST DCGAN at a wider generator; genlab.eval on 10,000 samples
#      emoji64-dcgan-g48/-g32   the 64 px DCGAN on emoji64 with DiffAugment; genlab.eval (1,320 samples)
#      vae                 retrained with a cosine lr decay; IWAE k = 5000 on all 10k test images,
#                          3 binarizations, for it and for the shipped file
# DATA_ROOT holds MNIST/raw (the IDX files, .gz is fine), checkpoints/ (the judges and mnist-vae, copied
# into ./checkpoints when missing) and emoji/ (NotoColorEmoji.ttf and emoji-test.txt, installed where
# Debian puts them; root). Through the device tool, copy them into an ignored folder (e.g. .gpu-data) and
# name it in `carry`. DEVICE=cpu SAMPLES=200 TRAIN_STEPS=20 VAE_STEPS=50 dry-runs the script on a CPU.
set -u -o pipefail
DATA=$(realpath "${1:?DATA_ROOT}"); OUT=$(realpath -m "${2:?OUT}"); DEADLINE=${3:-560}
DEVICE=${DEVICE:-cuda}; SAMPLES=${SAMPLES:-10000}; EVAL_RESERVE=${EVAL_RESERVE:-150}
TRAIN_STEPS=${TRAIN_STEPS:-200000}; VAE_STEPS=${VAE_STEPS:-40000}
END=$(( $(date +%s) + DEADLINE ))
left() { echo $(( END - $(date +%s) )); }
until_end_less() { local s=$(( END - $(date +%s) - $1 )); echo $(( s > 10 ? s : 10 )); }   # seconds, at least 10
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
mkdir -p "$OUT"; WORK=$(mktemp -d); RES=$WORK/results; MODELS=$WORK/models; mkdir -p "$RES" "$MODELS"

for f in "$DATA"/MNIST/raw/*.gz; do [ -f "${f%.gz}" ] || gunzip -k "$f"; done   # torchvision wants them plain
mkdir -p checkpoints && for f in "$DATA"/checkpoints/*; do [ -e "checkpoints/$(basename "$f")" ] || cp "$f" checkpoints/; done
if [ -f "$DATA/emoji/NotoColorEmoji.ttf" ] && [ ! -f /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ]; then
  mkdir -p /usr/share/fonts/truetype/noto /usr/share/unicode/emoji
  cp "$DATA/emoji/NotoColorEmoji.ttf" /usr/share/fonts/truetype/noto/
  cp "$DATA/emoji/emoji-test.txt" /usr/share/unicode/emoji/
fi

# ---- 1. env
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 - "$DEVICE" <<'EOF'
import sys, time, torch
print("torch", torch.__version__, "cuda", torch.cuda.is_available())
if sys.argv[1] == "cuda":
    print(torch.cuda.get_device_name(0))
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    for _ in range(3): a @ a
    torch.cuda.synchronize(); t = time.perf_counter()
    for _ in range(10): a @ a
    torch.cuda.synchronize()
    print(f"bf16 8192^3 matmul: {10 * 2 * 8192**3 / (time.perf_counter() - t) / 1e12:.0f} TFLOP/s")
EOF
} > "$RES/env.txt" 2>&1

# ---- 2. throughput, alone on the device
AMPS=$([ "$DEVICE" = cuda ] && echo "off bf16" || echo off)
for amp in $AMPS; do
  timeout -k 5 60 python3 -m bench.throughput --device "$DEVICE" --amp "$amp" --data mnist,faces64 --batch 128 \
      --repeats 1 --warmup 10 --steps 100 --steps-64 30 --faces 1024 --mnist-root "$DATA" --work "$WORK/bench" \
      > "$RES/throughput-$amp.txt" 2>&1
done
for amp in $AMPS; do
  timeout -k 5 45 python3 -m bench.throughput --device "$DEVICE" --amp "$amp" --data mnist --batch 256 \
      --models ddpm,flow --no-reference --repeats 1 --warmup 5 --steps 30 --mnist-root "$DATA" \
      --work "$WORK/bench" > "$RES/throughput-diffusion-$amp.txt" 2>&1
done

# ---- 3. trainings in parallel
keep_samples() {                  # the run folder without checkpoints and older grids (results.tgz must stay < 16 MB)
  mkdir -p "$RES/runs/$1/samples"
  (cd "$WORK/$1" 2>/dev/null && cp config.json metrics.jsonl status.json "$RES/runs/$1/" &&
   cp $(ls samples/step_*.png | tail -n 2) $(ls samples/strip_*.png 2>/dev/null | tail -n 2) "$RES/runs/$1/samples/")
  tail -n 2 "$WORK/$1/metrics.jsonl" >> "$RES/$1.log" 2>/dev/null
}
export_run() {                    # the fp16 inference export of a run's latest checkpoint
  python3 -c "import genlab, sys; genlab.export_checkpoint(sys.argv[1], sys.argv[2], half=True)" \
      "$WORK/$1" "$MODELS/$1.safetensors" >> "$RES/$1.log" 2>&1
}
train() {                         # NAME ARGS...: train until EVAL_RESERVE s before the deadline
  local name=$1; shift
  timeout -k 20 $(until_end_less $EVAL_RESERVE) python3 train.py --data-root "$DATA" --device "$DEVICE" \
      --steps "$TRAIN_STEPS" --log-every 200 --sample-every 2000 --checkpoint-every 1000 --eval-every 0 --no-progress \
      --run-dir "$WORK/$name" "$@" > "$RES/$name.log" 2>&1
  keep_samples "$name"; export_run "$name"
}
measure() {                       # NAME METRICS: genlab.eval of the export
  [ -f "$MODELS/$1.safetensors" ] || return
  timeout -k 5 $(until_end_less 15) python3 -m genlab.eval "$MODELS/$1.safetensors" --data-root "$DATA" \
      --device "$DEVICE" --metrics "$2" --samples "$SAMPLES" --out "$WORK/$1-eval" >> "$RES/$1.log" 2>&1
  cp "$WORK/$1-eval/eval.json" "$RES/$1-eval.json" 2>/dev/null
}
table() {                         # NAME ARGS...: sampling_table.py of the export
  local name=$1; shift
  [ -f "$MODELS/$name.safetensors" ] || return
  timeout -k 5 $(until_end_less 15) python3 scripts/sampling_table.py "$MODELS/$name.safetensors" \
      --data-root "$DATA" --device "$DEVICE" --samples "$SAMPLES" --out "$RES/$name-table.jsonl" "$@" \
      >> "$RES/$name.log" 2>&1
}
DIFFUSION=(--dataset mnist --batch-size 256 --width 24 --lr 4e-4 --lr-warmup 500 --ema-decay 0.9995 --sampling-steps 20)
GAN_MNIST=(--dataset mnist --model dcgan --batch-size 128 --ema-decay 0.999)
EMOJI=(--dataset emoji64 --model dcgan --batch-size 64 --diffaugment color,translation,cutout --ema-decay 0.999)
FIDS=fid,mode_coverage,precision_recall
( train ddpm --model ddpm "${DIFFUSION[@]}"; table ddpm --steps 50,25,10 --guidance 0,1,2,4 ) &
( train flow --model flow "${DIFFUSION[@]}"; table flow --steps 20,10,5 --samplers euler,heun --guidance 0,1,2,4 ) &
( train dcgan-g128 "${GAN_MNIST[@]}" --g-channels 128; measure dcgan-g128 $FIDS ) &
( train dcgan-g96 "${GAN_MNIST[@]}" --g-channels 96; measure dcgan-g96 $FIDS ) &
( train emoji64-dcgan-g48 "${EMOJI[@]}" --g-channels 48; measure emoji64-dcgan-g48 $FIDS ) &
( train emoji64-dcgan-g32 "${EMOJI[@]}" --g-channels 32; measure emoji64-dcgan-g32 $FIDS ) &
(
  timeout -k 20 $(until_end_less $EVAL_RESERVE) python3 train.py --model vae --dataset mnist --data-root "$DATA" \
      --device "$DEVICE" --steps "$VAE_STEPS" --batch-size 128 --lr-decay cosine --log-every 1000 --sample-every 10000 \
      --checkpoint-every 5000 --eval-every 0 --no-progress --run-dir "$WORK/vae" > "$RES/vae.log" 2>&1
  keep_samples vae; export_run vae
  for source in "$MODELS/vae.safetensors" checkpoints/mnist-vae.safetensors; do
    [ -f "$source" ] || continue
    name=$([ "$source" = checkpoints/mnist-vae.safetensors ] && echo vae-shipped || echo vae-retrained)
    timeout -k 5 $(( $(until_end_less 15) / 2 )) python3 -m genlab.eval "$source" --data-root "$DATA" --device "$DEVICE" \
        --metrics elbo,iwae --iwae-k 5000 --iwae-images "$SAMPLES" --binarize-seeds 0,1,2 --out "$WORK/$name" \
        > "$RES/$name-iwae.log" 2>&1
    cp "$WORK/$name/eval.json" "$RES/$name-iwae.json" 2>/dev/null
  done
) &
wait
nvidia-smi > "$RES/nvidia-smi-end.txt" 2>&1
ls -la "$MODELS" "$RES" > "$RES/listing.txt"
tar czf - -C "$RES" . | split -b 15m - "$OUT/results.tgz.part-"
tar cf - -C "$MODELS" . | split -b 15m - "$OUT/models.tar.part-"
cat "$RES"/*-table.jsonl 2>/dev/null | cut -c1-300
grep -h '"fid"' "$RES"/*-eval.json 2>/dev/null | head -20
echo "done with $(left) s to spare"
