#!/usr/bin/env bash
# One GPU check-and-measure session on a single NVIDIA GPU, results under OUT (default
# /tmp/gpu_session): the correctness check (launch/gpu_check.py), the base ST-Transformer's
# train step with XLA and with cuDNN attention (vidiff.model_info), then the U-Net vs
# ST-Transformer benchmark (vidiff.bench --preset=gpu, which keeps what it measured if cut
# short). On a machine without vidiff's dependencies, put wheels in .whl/ first: they are
# installed into /tmp/site. XLA's GPU autotuning is off unless AUTOTUNE=1..4 is set: with it
# on, the first such session's 203M-parameter train steps did not compile and run 10 steps in
# 120 s, and its log was full of the autotuner's timer warnings.
#
#   bash launch/gpu_session.sh [TOTAL_SECONDS]   # the bench gets what the rest leaves
set -uo pipefail
OUT="${OUT:-/tmp/gpu_session}"
TOTAL_S="${1:-600}"
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH="/tmp/site:$PWD"
else
  export PYTHONPATH="$PWD"
fi
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
export XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_autotune_level=${AUTOTUNE:-0}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import jax, flax, optax, orbax.checkpoint, grain; print('jax', jax.__version__, 'flax', flax.__version__, jax.devices())" || exit 1

echo "== [$SECONDS s] correctness"
timeout 180 python3 launch/gpu_check.py --out="$OUT" 2>&1 | tee "$OUT/gpu_check.log" | grep -v Warning

echo "== [$SECONDS s] base ST-Transformer train step: attention xla vs auto (cuDNN)"
for impl in xla auto; do
  timeout 120 python3 -m vidiff.model_info --config=configs/quickstart.py:st_transformer,base \
    --config.model.dtype=bfloat16 --config.model.remat_policy=full \
    --config.data.resolution=64 --config.data.num_frames=16 --config.train.batch_size=8 \
    --config.model.attention_impl=$impl --flops=false --train_steps=10 2>&1 \
    | tee "$OUT/model_info_$impl.log" | grep -v -i warning | tail -4
done

BENCH_S=$((TOTAL_S - SECONDS - 15))
echo "== [$SECONDS s] bench --preset=gpu (${BENCH_S} s at most)"
timeout "$BENCH_S" python3 -m vidiff.bench --out="$OUT/bench" --preset=gpu >"$OUT/bench.log" 2>&1
echo "bench exit $? at $SECONDS s"
cat "$OUT/bench/bench.md" 2>/dev/null || tail -30 "$OUT/bench.log"
