#!/usr/bin/env bash
# One GPU check-and-measure session on a single NVIDIA GPU, results under OUT (default
# /tmp/gpu_session): the correctness check (launch/gpu_check.py), the U-Net vs ST-Transformer
# benchmark (vidiff.bench --preset=gpu, which keeps what it measured if cut short), then the
# base ST-Transformer's train step with XLA and with cuDNN attention (vidiff.model_info), with
# the last 260 s. On a machine without vidiff's dependencies, put wheels in .whl/ first: they
# are installed into /tmp/site. XLA's GPU autotuning is off unless AUTOTUNE=1..4 is set: with
# it on, the first such session's 203M-parameter train steps did not compile and run 10 steps
# in 120 s, and its log was full of the autotuner's timer warnings.
#
#   [CHECK=0] [AUTOTUNE=N] bash launch/gpu_session.sh [TOTAL_SECONDS]
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

if [ "${CHECK:-1}" != 0 ]; then  # CHECK=0: skip it (it passed, and nothing it covers changed)
  echo "== [$SECONDS s] correctness"
  timeout 180 python3 launch/gpu_check.py --out="$OUT" 2>&1 | tee "$OUT/gpu_check.log" | grep -v Warning
fi

BENCH_S=$((TOTAL_S - SECONDS - 260))
echo "== [$SECONDS s] bench --preset=gpu (${BENCH_S} s at most)"
timeout "$BENCH_S" python3 -m vidiff.bench --out="$OUT/bench" --preset=gpu >"$OUT/bench.log" 2>&1
echo "bench exit $? at $SECONDS s"
cat "$OUT/bench/bench.md" 2>/dev/null || tail -30 "$OUT/bench.log"

# One process, one initial state for both kernels: the 203M model's state initialisation
# alone compiles for about a minute on an H200, its train step for about 35 s.
KERNEL_S=$((TOTAL_S - SECONDS - 5))
echo "== [$SECONDS s] base ST-Transformer train step: attention xla vs auto (cuDNN), ${KERNEL_S} s at most"
timeout "$KERNEL_S" python3 -m vidiff.model_info --config=configs/quickstart.py:st_transformer,base \
  --config.model.dtype=bfloat16 --config.model.remat_policy=full \
  --config.data.resolution=64 --config.data.num_frames=16 --config.train.batch_size=8 \
  --attention_impls=xla,auto --flops=false --train_steps=10 2>&1 \
  | tee "$OUT/model_info.log" | grep -v -i warning | grep "train step"
echo "done at $SECONDS s"
