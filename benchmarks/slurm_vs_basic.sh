#!/usr/bin/env bash
# Wall time of one 4-job sweep (model=ae,vae latent=2,5, 1 epoch, 2000 train / 500 test images)
# through Slurm (one job array on the cluster that SLURM_CONF names; 1 CPU per job, so two run at
# once on a 2-CPU node) and then, right after, through Hydra's basic launcher (one job after
# another in one process, each with all the cores).  Start the local cluster first:
#   scripts/slurm-cluster.sh start && benchmarks/slurm_vs_basic.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$PWD/.venv/bin/python}
export SLURM_CONF=${SLURM_CONF:-${AEBENCH_SLURM_DIR:-/tmp/aebench-slurm}/etc/slurm.conf}
partition=$(sinfo -h -o %P | sed -n 's/\*$//p' | head -n 1)
[ -n "$partition" ] || { echo "slurm_vs_basic: no Slurm cluster answers (sinfo)" >&2; exit 1; }

SWEEP=(model=ae,vae latent=2,5 epochs=1 data.train_subset=2000 data.test_subset=500 progress=false)
SLURM=(hydra/launcher=submitit_slurm "hydra.launcher.partition=$partition" hydra.launcher.cpus_per_task=1
       hydra.launcher.gpus_per_node=0 hydra.launcher.mem_gb=2)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

timed() {  # timed NAME ARGS...: run one sweep in its own folder, print its wall time
  local name=$1; shift
  mkdir "$work/$name"
  local start=$EPOCHREALTIME
  (cd "$work/$name" && "$PYTHON" -m aebench -m "$@" >"$work/$name.log" 2>&1) \
    || { echo "slurm_vs_basic: the $name sweep failed:" >&2; tail -20 "$work/$name.log" >&2; exit 1; }
  echo "$name: $(python3 -c "print(f'{$EPOCHREALTIME - $start:.1f}')") s   aebench -m $*"
}

echo "load before: $(uptime | sed 's/.*load average/load average/')"
timed slurm "${SLURM[@]}" "${SWEEP[@]}"
timed basic hydra/launcher=basic "${SWEEP[@]}"
echo "load after:  $(uptime | sed 's/.*load average/load average/')"
