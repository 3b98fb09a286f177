#!/usr/bin/env bash
# The prepared GPU check: one short script for a session that is lent a GPU (about 10 minutes on an H100).
#
#   bash scripts/gpu_check.sh DATA_ROOT OUT [SECONDS_PER_TRAINING] [STAGES]
#
# STAGES (default "env throughput vae diffusion dcgan emoji") picks what runs, in that order; a device call runs for at
# most 10 minutes, so run "env throughput vae" (about 8 min) and "diffusion" (about 2 x (S + 90) s) apart.
# DATA_ROOT holds MNIST/raw (the four IDX files, .gz is fine); OUT receives the logs and results:
#   env.txt             GPU, torch, a bf16 matrix product's TFLOP/s
#   throughput-*.txt    bench.throughput at 28 and 64 px, fp32 and bf16 autocast (genlab beside the tutorial)
#   vae-*.json, vae.safetensors
#                       the VAE retrained with a cosine lr decay; its and the shipped file's IWAE bound,
#                       k = 5000, all 10,000 test images, 3 binarizations
#   <name>.log, <name>-eval.json, <name>.safetensors
#                       ddpm, flow (stage diffusion), a wider DCGAN (stage dcgan) and the emoji64
#                       DCGAN and cGAN at 64 px (stage emoji) trained for
#                       SECONDS_PER_TRAINING (default 150) each, then measured on 10,000 samples by the
#                       MNIST judge, and exported (fp16, inference only)
# Through the device tool, the data must travel with the tree: copy ../shared/data/MNIST/raw/*.gz into an
# ignored folder (e.g. .gpu-data/MNIST/raw), name it in `carry`, and pass .gpu-data as DATA_ROOT. For the
# emoji stage add the rendered cache (../shared/data/cache/genlab-emoji64-*.safetensors, 20 MB) under
# .gpu-data/cache/ and the two Debian packages it is checked against (`apt-get download
# fonts-noto-color-emoji unicode-data` into .gpu-data/debs/).
set -u -o pipefail
DATA=${1:?DATA_ROOT}; OUT=${2:?OUT}; SECONDS_EACH=${3:-150}; STAGES=${4:-env throughput vae diffusion dcgan emoji}
DEVICE=${DEVICE:-cuda}                            # DEVICE=cpu dry-runs the script here
wants() { [[ " $STAGES " == *" $1 "* ]]; }
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
WORK=$(mktemp -d)

wants env && { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 - <<'EOF'
import time, torch
print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0))
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
for _ in range(3): a @ a
torch.cuda.synchronize(); t = time.perf_counter()
for _ in range(10): a @ a
torch.cuda.synchronize()
print(f"bf16 8192^3 matmul: {10 * 2 * 8192**3 / (time.perf_counter() - t) / 1e12:.0f} TFLOP/s")
EOF
} > "$OUT/env.txt" 2>&1

wants throughput && for amp in off bf16; do
  timeout 120 python3 -m bench.throughput --device "$DEVICE" --amp "$amp" --data mnist,faces64 --batch 128 \
      --repeats 2 --warmup 20 --steps 200 --steps-64 60 --mnist-root "$DATA" --work "$WORK/bench" \
      > "$OUT/throughput-$amp.txt" 2>&1
done

# the VAE retrained with a cosine learning-rate decay (85 epochs), then both it and the shipped file measured
wants vae && timeout 240 python3 train.py --model vae --dataset mnist --data-root "$DATA" --device "$DEVICE" --steps 40000 \
    --batch-size 128 --lr-decay cosine --log-every 500 --sample-every 10000 --checkpoint-every 5000 --no-progress \
    --run-dir "$WORK/vae-run" > "$OUT/vae-train.log" 2>&1
wants vae && for source in checkpoints/mnist-vae.safetensors "$WORK/vae-run"; do
  name=$([ -d "$source" ] && echo vae-retrained || echo vae-shipped)
  [ -e "$source/checkpoints/latest.safetensors" ] || [ -f "$source" ] || continue
  timeout 150 python3 -m genlab.eval "$source" --data-root "$DATA" --device "$DEVICE" --metrics elbo,iwae --iwae-k 5000 \
      --iwae-images 10000 --binarize-seeds 0,1,2 --out "$WORK/$name" > "$OUT/$name-iwae.log" 2>&1
  cp "$WORK/$name/eval.json" "$OUT/$name-iwae.json" 2>/dev/null
done
[ -d "$WORK/vae-run/checkpoints" ] && python3 -c "import genlab, sys; genlab.export_checkpoint(sys.argv[1], sys.argv[2], half=True)" \
    "$WORK/vae-run" "$OUT/vae.safetensors" >> "$OUT/vae-train.log" 2>&1

# train NAME for SECONDS_EACH (time-boxed), measure its latest checkpoint on 10,000 samples, export it (fp16)
train_eval() {
  local name=$1; shift
  timeout "$SECONDS_EACH" python3 train.py --dataset mnist --data-root "$DATA" --device "$DEVICE" --steps 50000 \
      --log-every 100 --sample-every 2000 --checkpoint-every 1000 --no-progress --run-dir "$WORK/$name" "$@" \
      > "$OUT/$name.log" 2>&1
  tail -n 3 "$WORK/$name/metrics.jsonl" >> "$OUT/$name.log" 2>/dev/null
  local latest="$WORK/$name/checkpoints/latest.safetensors"
  [ -f "$latest" ] || return
  timeout 90 python3 -m genlab.eval "$latest" --data-root "$DATA" --device "$DEVICE" \
      --metrics fid,mode_coverage,precision_recall --out "$WORK/$name-eval" >> "$OUT/$name.log" 2>&1
  cp "$WORK/$name-eval/eval.json" "$OUT/$name-eval.json" 2>/dev/null
  python3 -c "import genlab, sys; genlab.export_checkpoint(sys.argv[1], sys.argv[2], half=True)" \
      "$latest" "$OUT/$name.safetensors" >> "$OUT/$name.log" 2>&1
}
if wants diffusion; then
  train_eval ddpm --model ddpm --batch-size 128 --lr-warmup 1000 --ema-decay 0.999
  train_eval flow --model flow --batch-size 128 --lr-warmup 1000 --ema-decay 0.999
fi
# emoji64 at 64 px: the paper's DCGAN and the cGAN on the 9 emoji groups, with DiffAugment (1,320 images)
if wants emoji; then
  for deb in "$DATA"/debs/*.deb; do [ -f "$deb" ] && dpkg -x "$deb" /; done      # the font and emoji-test.txt
  train_eval emoji64-dcgan --dataset emoji64 --model dcgan --batch-size 64 --diffaugment color,translation,cutout \
      --ema-decay 0.999
  train_eval emoji64-cgan --dataset emoji64 --model cgan --batch-size 64 --diffaugment color,translation,cutout \
      --ema-decay 0.999
fi
# the MNIST DCGAN target (>= 90% confident samples, FID <= 2) with a generator of 3M parameters
wants dcgan && train_eval dcgan-wide --model dcgan --batch-size 128 --g-channels 128 --d-channels 128 --ema-decay 0.999
ls -la "$OUT"
