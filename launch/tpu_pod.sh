#!/usr/bin/env bash
# Train on a Cloud TPU VM slice (or several slices over DCN) with gcloud.
#
#   launch/tpu_pod.sh create  --name=vd --zone=us-east5-a --type=v5p-128 [--slices=2] [--spot]
#   launch/tpu_pod.sh install --name=vd --zone=us-east5-a [--slices=2]
#   launch/tpu_pod.sh train   --name=vd --zone=us-east5-a [--slices=2] -- \
#       --config=configs/quickstart.py:st_transformer,large --workdir=gs://BUCKET/runs/st_large \
#       --config.mesh.fsdp=-1 --config.mesh.dcn.data=2
#   launch/tpu_pod.sh logs    --name=vd --zone=us-east5-a
#   launch/tpu_pod.sh delete  --name=vd --zone=us-east5-a [--slices=2]
#
# --dry-run (any subcommand) prints the gcloud commands instead of running them.
# create: a queued resource (capacity is queued, not refused; required for multi-slice); with
#   --slices=N the nodes are NAME-0 .. NAME-(N-1) and JAX sees them as one job over DCN.
# install: copies this checkout (git archive HEAD) to every worker of every slice and runs
#   `pip install -e ".[tpu]"` in ~/vidiff/.venv.
# train: starts `python -m vidiff.main --distributed ARGS` on every worker (jax.distributed
#   finds the coordinator itself on TPU VMs), in the background, logging to ~/vidiff.log. Use a
#   gs:// workdir: every host writes its part of the checkpoint there. Run `train` again after
#   a preemption or maintenance: it resumes from the latest checkpoint.
# Options: --project=P (default: gcloud's), --version=RUNTIME (default v2-alpha-tpuv5 for v5p,
#   v2-alpha-tpuv5-lite for v5e, tpu-vm-v4-base for v4, v2-alpha-tpuv6e for v6e).
set -euo pipefail

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2; exit 2; }
[[ $# -ge 1 ]] || usage
action="$1"; shift
name="" zone="" type="" slices=1 project="" version="" spot=0 dry_run=0 train_args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --name=*) name="${1#*=}" ;;
    --zone=*) zone="${1#*=}" ;;
    --type=*) type="${1#*=}" ;;
    --slices=*) slices="${1#*=}" ;;
    --project=*) project="${1#*=}" ;;
    --version=*) version="${1#*=}" ;;
    --spot) spot=1 ;;
    --dry-run) dry_run=1 ;;
    --) shift; train_args=("$@"); break ;;
    *) echo "tpu_pod.sh: unknown option $1" >&2; usage ;;
  esac
  shift
done
[[ -n "$name" && -n "$zone" ]] || { echo "tpu_pod.sh: --name and --zone are required" >&2; exit 2; }
[[ "$slices" =~ ^[1-9][0-9]*$ ]] || { echo "tpu_pod.sh: --slices must be a positive integer" >&2; exit 2; }

common=(--zone="$zone")
[[ -n "$project" ]] && common+=(--project="$project")

run() {  # prints the command under --dry-run, else runs it
  if [[ $dry_run -eq 1 ]]; then printf '%q ' "$@"; echo; else "$@"; fi
}

nodes() {  # the TPU VM names: NAME, or NAME-0 .. NAME-(N-1) for multi-slice
  if [[ "$slices" -eq 1 ]]; then echo "$name"; else for ((i = 0; i < slices; i++)); do echo "$name-$i"; done; fi
}

runtime_version() {
  if [[ -n "$version" ]]; then echo "$version"; return; fi
  case "$type" in
    v5p-*) echo v2-alpha-tpuv5 ;;
    v5litepod-*|v5e-*) echo v2-alpha-tpuv5-lite ;;
    v6e-*) echo v2-alpha-tpuv6e ;;
    v4-*) echo tpu-vm-v4-base ;;
    *) echo "tpu_pod.sh: pass --version for --type=$type" >&2; exit 2 ;;
  esac
}

create() {
  [[ -n "$type" ]] || { echo "tpu_pod.sh: create needs --type (e.g. v5p-128, v5litepod-256)" >&2; exit 2; }
  local runtime args
  runtime="$(runtime_version)"
  args=(gcloud compute tpus queued-resources create "$name" "${common[@]}"
        --accelerator-type="$type" --runtime-version="$runtime")
  if [[ "$slices" -eq 1 ]]; then args+=(--node-id="$name"); else args+=(--node-count="$slices" --node-prefix="$name"); fi
  [[ $spot -eq 1 ]] && args+=(--spot)
  run "${args[@]}"
}

install() {
  local tarball
  tarball="$(mktemp -d)/vidiff.tar.gz"
  run git -C "$(dirname "$0")/.." archive --format=tar.gz --prefix=vidiff/ -o "$tarball" HEAD
  for node in $(nodes); do
    run gcloud compute tpus tpu-vm scp "$tarball" "$node:~/vidiff.tar.gz" "${common[@]}" --worker=all
    run gcloud compute tpus tpu-vm ssh "$node" "${common[@]}" --worker=all --command \
      'rm -rf ~/vidiff && tar xzf ~/vidiff.tar.gz -C ~ && cd ~/vidiff && python3 -m venv .venv && . .venv/bin/activate && pip install -q -e ".[tpu]"'
  done
}

train() {
  [[ ${#train_args[@]} -gt 0 ]] || { echo "tpu_pod.sh: train needs -- --config=... --workdir=gs://..." >&2; exit 2; }
  local cmd
  cmd="cd ~/vidiff && . .venv/bin/activate && nohup python -m vidiff.main --distributed $(printf '%q ' "${train_args[@]}")> ~/vidiff.log 2>&1 &"
  for node in $(nodes); do
    run gcloud compute tpus tpu-vm ssh "$node" "${common[@]}" --worker=all --command "$cmd"
  done
}

logs() {
  run gcloud compute tpus tpu-vm ssh "$(nodes | head -1)" "${common[@]}" --worker=0 --command 'tail -n 100 -f ~/vidiff.log'
}

delete() {
  run gcloud compute tpus queued-resources delete "$name" "${common[@]}" --force --quiet
}

case "$action" in
  create|install|train|logs|delete) "$action" ;;
  *) echo "tpu_pod.sh: unknown action $action" >&2; usage ;;
esac
