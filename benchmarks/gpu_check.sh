#!/usr/bin/env bash
# Every GPU measurement in one short run, most important first (a run cut short still has the head):
# the default pipeline on a fresh data root, again warm, the conv AE, the default under bf16; training
# throughput against the reference (fp32); the networks' step times; a sweep of small jobs; then the
# throughput under bf16 and torch.compile.
# Usage, on a machine with a CUDA GPU and aebench installed:  bash benchmarks/gpu_check.sh [OUT_DIR]
# AEBENCH_DATA should hold MNIST's raw files and no baseline cache, so that the first run is a first run.
set -uo pipefail
out=$(mkdir -p "${1:-gpu-check}" && cd "${1:-gpu-check}" && pwd)
py=${PYTHON:-python3}
now() { date +%s.%N; }
since() { $py -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"

# one pipeline run: wall clock including start-up, and the run's own accounting from metrics.json
pipeline() {  # name, overrides...
  local name=$1; shift
  local start; start=$(now)
  (cd "$out" && aebench device=cuda progress=false hydra.run.dir="$name" "$@") > "$out/$name.log" 2>&1
  echo "$name ($*): exit $?, $(since "$start") s wall" | tee -a "$out/summary.txt"
  $py - "$out/$name/metrics.json" <<'EOF' 2>&1 | tee -a "$out/summary.txt"
import json, sys
m = json.load(open(sys.argv[1]))
s = {k: round(v, 1) for k, v in m["seconds"].items()}
print(f"  probe {m.get('probe_accuracy')}  neg_elbo {m.get('neg_elbo')}  seconds {s}  memory {m.get('memory')}")
EOF
}

# 1. the default pipeline: first run (builds the data root's baselines), then warm, then bf16; the conv AE
pipeline default_first
pipeline default_warm
pipeline conv_ae arch=conv
pipeline default_bf16 train.precision=bf16

# 2. training throughput at the reference setting (batch 64): aebench vs the reference pipeline, same GPU
$py benchmarks/throughput.py --device cuda --epochs 2 --no-e2e --json "$out/throughput_fp32.json" 2>&1 | tee "$out/throughput_fp32.txt"

# 3. the networks' training step (MLP, conv, conv channels-last)
$py benchmarks/conv_speed.py --device cuda --steps 100 --rounds 3 2>&1 | tee "$out/conv_speed.txt"

# 4. a sweep of small jobs on one GPU: one at a time vs several at once
for launcher in basic joblib; do
  extra=""; [ $launcher = joblib ] && extra="hydra.launcher.n_jobs=4 threads=4"
  start=$(now)
  (cd "$out" && aebench -m hydra/launcher=$launcher $extra latent=2,5,10,20 epochs=5 device=cuda progress=false \
     hydra.sweep.dir=sweep_$launcher) > "$out/sweep_$launcher.log" 2>&1
  echo "4-job sweep, launcher $launcher: exit $?, $(since "$start") s wall" | tee -a "$out/summary.txt"
done

# 5. throughput under bf16 autocast and torch.compile
$py benchmarks/throughput.py --device cuda --epochs 2 --no-e2e --precision bf16 --json "$out/throughput_bf16.json" 2>&1 | tee "$out/throughput_bf16.txt"
$py benchmarks/throughput.py --device cuda --epochs 2 --no-e2e --compile --json "$out/throughput_compile.json" 2>&1 | tee "$out/throughput_compile.txt"
