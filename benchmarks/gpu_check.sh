#!/usr/bin/env bash
# Every GPU measurement in one short run (about 7 minutes on an H100): throughput against the reference,
# the default pipeline (MLP and conv), the conv networks' step time, and a sweep of small jobs.
# Usage, on a machine with a CUDA GPU and aebench installed:  bash benchmarks/gpu_check.sh [OUT_DIR]
set -uo pipefail
out=${1:-gpu-check}
mkdir -p "$out"
py=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"

# 1. training throughput at the reference setting (batch 64): aebench vs the reference pipeline, same GPU
$py benchmarks/throughput.py --device cuda --epochs 2 --no-e2e --json "$out/throughput_fp32.json" 2>&1 | tee "$out/throughput_fp32.txt"
$py benchmarks/throughput.py --device cuda --epochs 2 --no-e2e --precision bf16 --json "$out/throughput_bf16.json" 2>&1 | tee "$out/throughput_bf16.txt"
$py benchmarks/throughput.py --device cuda --epochs 2 --no-e2e --compile --json "$out/throughput_compile.json" 2>&1 | tee "$out/throughput_compile.txt"

# 1b. the networks' training step (MLP, conv, conv channels-last)
$py benchmarks/conv_speed.py --device cuda --steps 100 --rounds 3 2>&1 | tee "$out/conv_speed.txt"

# 2. the default pipeline (and the conv AE), wall clock including start-up, and where its time goes
for arch in conv; do
  start=$(date +%s.%N)
  (cd "$out" && aebench device=cuda progress=false arch=$arch hydra.run.dir=default_$arch) > "$out/default_$arch.log" 2>&1
  echo "arch=$arch pipeline: $(echo "$(date +%s.%N) - $start" | bc) s wall" | tee -a "$out/summary.txt"
  $py -c "import json,sys; m=json.load(open(sys.argv[1])); print(m['probe_accuracy'], m['seconds'], m['memory'])" "$out/default_$arch/metrics.json" | tee -a "$out/summary.txt"
done
for precision in fp32 bf16; do
  start=$(date +%s.%N)
  (cd "$out" && aebench device=cuda progress=false train.precision=$precision hydra.run.dir=default_$precision) > "$out/default_$precision.log" 2>&1
  echo "default pipeline ($precision): $(echo "$(date +%s.%N) - $start" | bc) s wall" | tee -a "$out/summary.txt"
  $py -c "import json,sys; m=json.load(open(sys.argv[1])); print(m['probe_accuracy'], m['seconds'], m['memory'])" "$out/default_$precision/metrics.json" | tee -a "$out/summary.txt"
done

# 3. a sweep of small jobs on one GPU: one at a time vs several at once
for launcher in basic joblib; do
  extra=""; [ $launcher = joblib ] && extra="hydra.launcher.n_jobs=4 threads=4"
  start=$(date +%s.%N)
  (cd "$out" && aebench -m hydra/launcher=$launcher $extra latent=2,5,10,20 epochs=5 device=cuda progress=false \
     hydra.sweep.dir=sweep_$launcher) > "$out/sweep_$launcher.log" 2>&1
  echo "4-job sweep, launcher $launcher: $(echo "$(date +%s.%N) - $start" | bc) s wall" | tee -a "$out/summary.txt"
done
