# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# <a href="https://colab.research.google.com/github/vidiff/vidiff/blob/main/colabs/quickstart.ipynb" target="_parent"><img src="https://colab.research.google.com/assets/colab-badge.svg" alt="Open In Colab"/></a>
#
# # vidiff quickstart: train a tiny text-to-video model and sample from it
#
# This notebook does what `python -m vidiff.main --config=configs/quickstart.py --workdir=DIR`
# does, through the library API: it looks at the synthetic training data (coloured shapes
# moving across a dark background, with captions), trains the 3.5M-parameter quickstart 3D
# U-Net with `vidiff.train.train_and_evaluate(config, workdir)`, plots the loss, then restores
# the checkpoint and samples videos for new prompts.
#
# It runs on any Colab runtime (CPU, GPU or TPU). On a CPU runtime the 2000 training steps (a
# third of the batches single frames, which teach the shapes) take 8-10 minutes on a 2-core host
# (one JAX device here; the command line splits the CPU in two and is faster). `VIDIFF_SMOKE=1`
# in the environment shrinks everything to seconds (what CI runs).

# %%
# In Colab: fetch vidiff and install it with the JAX build for this runtime (CPU, GPU or TPU).
# Anywhere else this cell does nothing: install with `pip install -e ".[dev]"` from a checkout.
import os
import shutil
import subprocess
import sys

if 'google.colab' in sys.modules:
  if not os.path.exists('/content/vidiff'):
    subprocess.run(['git', 'clone', '--depth=1', 'https://github.com/vidiff/vidiff',
                    '/content/vidiff'], check=True)
    tpu = (os.path.exists('/dev/accel0') or os.path.exists('/dev/vfio/0') or
           'TPU_ACCELERATOR_TYPE' in os.environ or 'COLAB_TPU_ADDR' in os.environ)
    extra = '[tpu]' if tpu else '[gpu]' if shutil.which('nvidia-smi') else ''
    subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '-e', f'/content/vidiff{extra}'],
                   check=True)
  sys.path.insert(0, '/content/vidiff')  # an editable install is only on sys.path after a restart

# %%
# VIDIFF_SMOKE=1: a few steps of the tiny model, compiled fast, on CPU (CI runs this).
from vidiff import notebook  # before jax: a smoke run sets XLA flags

SMOKE = notebook.smoke()

import pathlib

import jax
import matplotlib.pyplot as plt

from configs import quickstart
from vidiff import generate, inference, metric_writer, train, video_io
from vidiff.data import pipeline, synthetic
from vidiff.metrics import adherence

WORKDIR = pathlib.Path('vidiff_quickstart').resolve()  # checkpoints, logs, samples
print(f'smoke: {SMOKE}; devices: {jax.devices()}; workdir: {WORKDIR}')


# %% [markdown]
# ## The config
#
# `configs/quickstart.py` is an `ml_collections.ConfigDict`; every field can be changed here
# as on the command line (`--config.train.num_steps=200`). The tiny size (`unet3d,tiny`:
# 4 frames of 16x16) is what the smoke run and the tests use. The batch is split over all
# devices, so it is rounded up to a multiple of the device count (a Colab TPU has 8).

# %%
config = quickstart.get_config('unet3d,tiny' if SMOKE else 'unet3d')
if SMOKE:
  config.train.update(num_steps=8, log_every=2, eval_every=8, checkpoint_every=8)
ways = jax.device_count()
config.train.batch_size = -(-config.train.batch_size // ways) * ways
config.sample.num_prompts = 0  # we sample below, through the library
config.metrics.every = 0  # FVD & co. during training: see the `metrics` notebook
print(config.model.name, 'frames', config.data.num_frames, 'resolution', config.data.resolution,
      'batch', config.train.batch_size, 'steps', config.train.num_steps)

# %% [markdown]
# ## The training data
#
# Synthetic videos rendered on the fly: one object (circle, square or triangle; six colours)
# moving in one of four directions, with a caption saying so. These are held-out clips at the
# training resolution, exactly as the model sees them (every 2nd frame of the source video).

# %%
clips, captions = pipeline.held_out_clips(config.data, 4)
print(clips.shape, clips.dtype)
notebook.show_videos(clips, captions)
notebook.show_image(video_io.grid(video_io.upscale(clips, 64)))

# %% [markdown]
# ## Train
#
# `train_and_evaluate` builds the mesh (all devices on the `data` axis), initialises the
# sharded train state, compiles the train step once, and runs the loop: logs to TensorBoard and
# `metrics.jsonl`, evaluates on held-out clips, and writes orbax checkpoints. Running the cell
# again resumes from the last checkpoint.

# %%
state = train.train_and_evaluate(config, str(WORKDIR))
print('trained to step', int(state.step))

# %% [markdown]
# The scalars are in `WORKDIR/events.out.tfevents.*` (for `tensorboard --logdir`) and, the same
# numbers, in `WORKDIR/metrics.jsonl`:

# %%
rows = metric_writer.read_jsonl(WORKDIR)
fig, ax = plt.subplots(figsize=(6, 3.5))
for key in ('train/loss', 'eval/loss'):
  points = [(r['step'], r[key]) for r in rows if key in r]
  ax.plot(*zip(*points), marker='o' if len(points) < 30 else None, label=key)
ax.set(xlabel='step', ylabel='x0 MSE', yscale='log', title=f'{config.model.name} loss')
ax.grid(alpha=0.3)
ax.legend()
notebook.show_figure(fig)

# %% [markdown]
# ## Sample
#
# `inference.restore_setup(workdir)` restores the latest checkpoint with the config saved
# beside it; `generate.generate` runs the sampler (DDIM, one `lax.scan` inside `jit`) with the
# EMA parameters for each prompt. `adherence.score_batch` checks colour, direction and shape of
# the generated object against the prompt (chance: 1/6, 1/4, 1/3).

# %%
setup, restored = inference.restore_setup(str(WORKDIR))
prompts = synthetic.example_prompts(4, seed=1)
options = generate.options_from_config(setup.config, steps=4 if SMOKE else 50)
videos = generate.generate(setup, restored.ema_params, prompts, options)
scores = adherence.score_batch(videos, prompts)
print(videos.shape, 'prompt adherence:', ', '.join(f'{k} {v:.2f}' for k, v in scores.items()))
notebook.show_videos(videos, prompts)

# %% [markdown]
# Every frame of every sample (rows = prompts, columns = frames):

# %%
notebook.show_image(video_io.grid(video_io.upscale(videos, 64)))
