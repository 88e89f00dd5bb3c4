#!/usr/bin/env bash
# Multi-node GPU training under SLURM: one process per node, all of a node's GPUs per process.
#
#   sbatch --nodes=4 --gpus-per-node=8 launch/gpu_slurm.sh \
#       --config=configs/quickstart.py:st_transformer,base --workdir=gs://BUCKET/runs/st_base \
#       --config.mesh.fsdp=8 --config.mesh.data=-1 --config.mesh.dcn.data=4
#   bash launch/gpu_slurm.sh --dry-run --config=... --workdir=...   # print, run nothing
#
# `python -m vidiff.main --distributed` calls jax.distributed.initialize(), which reads the
# coordinator, process count and process id from SLURM's environment (SLURM_JOB_NODELIST,
# SLURM_NTASKS, SLURM_PROCID). Put the nodes on `mesh.dcn.*` (here: data over 4 nodes) and
# the GPUs of a node on the rest. Resubmitting the same job resumes from the latest checkpoint;
# SLURM's SIGTERM before a time limit or preemption saves one first (exit 143, requeueable).
# Environment: VIDIFF_VENV (a virtualenv with `pip install -e ".[gpu]"`, default .venv).
#SBATCH --job-name=vidiff
#SBATCH --ntasks-per-node=1
#SBATCH --exclusive
#SBATCH --signal=TERM@120
#SBATCH --requeue
#SBATCH --output=vidiff-%j.log
set -euo pipefail

dry_run=0
args=()
for arg in "$@"; do
  if [[ "$arg" == "--dry-run" ]]; then dry_run=1; else args+=("$arg"); fi
done
if [[ ${#args[@]} -eq 0 ]]; then
  echo "usage: sbatch [--nodes=N --gpus-per-node=G] $0 --config=... --workdir=... [--config.X=...]" >&2
  exit 2
fi

repo="${SLURM_SUBMIT_DIR:-$(cd "$(dirname "$0")/.." && pwd)}"
venv="${VIDIFF_VENV:-$repo/.venv}"
# One process sees all GPUs of its node; XLA may use most of their memory.
env_line="XLA_PYTHON_CLIENT_MEM_FRACTION=0.9 NCCL_DEBUG=WARN"
train="cd $repo && . $venv/bin/activate && $env_line python -m vidiff.main --distributed $(printf '%q ' "${args[@]}")"

if [[ $dry_run -eq 1 ]]; then
  echo "srun --ntasks-per-node=1 --kill-on-bad-exit=1 bash -c '$train'"
  exit 0
fi
exec srun --ntasks-per-node=1 --kill-on-bad-exit=1 bash -c "$train"
