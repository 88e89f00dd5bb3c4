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
# <a href="https://colab.research.google.com/github/vidiff/vidiff/blob/main/colabs/long_video.ipynb" target="_parent"><img src="https://colab.research.google.com/assets/colab-badge.svg" alt="Open In Colab"/></a>
#
# # Long videos from a model trained on 8-frame clips
#
# A model that saw only short clips can still make a long video: sample it chunk by chunk,
# each chunk continuing a few clean frames of the one before (**latent splicing**), or denoise
# overlapping **sliding windows** of the whole video together at every step. Both are what
# `python -m vidiff.sample --num_frames=32 [--long_mode=splice|window]` does; here we call the
# library and look at what long videos get wrong: the object **fading out and coming back
# elsewhere**, jumping, changing colour or shape (`vidiff.metrics.persistence` tracks it), and
# seams where one chunk hands over to the next.
#
# Free sliding windows (`--noanchor`) show the failure: windows that see no clean frame draw
# the object where they like, and averaging them fades it out. Anchored windows (the default)
# give every window a clean first frame from the windows before it, and the object stays far
# more often (16-frame videos of 16 prompts: 15 persist against 8, docs/long_videos.md); at 32
# frames some objects still run into a wall.
#
# The model: the quickstart checkpoint if the `quickstart` notebook ran in this runtime
# (`vidiff_quickstart/`), else the quickstart U-Net is trained here first (12-16 minutes on a
# 2-core CPU runtime). Its objects move at a constant speed and cross the 32x32 frame in 20-30
# frames, so we make 32-frame videos (4 chunks); for longer ones, train on bouncing objects
# (`configs/quickstart.py:bounce=1`, docs/long_videos.md). `VIDIFF_SMOKE=1` trains the tiny
# model for a few steps and makes 16 frames.

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
# VIDIFF_SMOKE=1: the tiny model, a few steps, compiled fast, on CPU (CI runs this).
from vidiff import notebook  # before jax: a smoke run sets XLA flags

SMOKE = notebook.smoke()

import pathlib

import jax
import matplotlib.pyplot as plt
import numpy as np

from configs import quickstart
from vidiff import generate, inference, sample_bench, train, video_io
from vidiff.data import synthetic
from vidiff.metrics import persistence

NUM_FRAMES = 16 if SMOKE else 32
NUM_PROMPTS = 2 if SMOKE else 4
STEPS = 4 if SMOKE else 50
OUT = pathlib.Path('vidiff_long_video').resolve()
print(f'smoke: {SMOKE}; devices: {jax.devices()}')


# %% [markdown]
# ## A trained model
#
# Splicing conditions each new chunk on the frames it shares with the previous one, given to
# the model as clean frames. The quickstart config trains for that: 80% of its clips
# (`diffusion.context.prob`) come with their first frame clean and left out of the loss.

# %%
if not SMOKE and (pathlib.Path('vidiff_quickstart') / 'checkpoints').exists():
  WORKDIR = pathlib.Path('vidiff_quickstart').resolve()  # the quickstart notebook's model
else:
  WORKDIR = OUT / 'model'
  config = quickstart.get_config('unet3d,tiny' if SMOKE else 'unet3d')
  if SMOKE:
    config.train.update(num_steps=8, log_every=2, eval_every=8, checkpoint_every=8)
  ways = jax.device_count()  # the batch is split over all devices
  config.train.batch_size = -(-config.train.batch_size // ways) * ways
  config.sample.num_prompts = 0
  config.metrics.every = 0
  WORKDIR.parent.mkdir(parents=True, exist_ok=True)
  train.train_and_evaluate(config, str(WORKDIR))
setup, state = inference.restore_setup(str(WORKDIR))
CHUNK = setup.config.data.num_frames  # the training clip length: frames per forward pass
print(f'model from {WORKDIR} at step {int(state.step)}: {setup.config.model.name}, '
      f'{CHUNK} frames of {setup.config.data.resolution}x{setup.config.data.resolution}')

# %% [markdown]
# ## Sample long videos, three ways
#
# - `splice`: chunks of `CHUNK` frames; each shares `overlap` (default chunk/4, at most the
#   context frames the model learned to continue: 1 for the quickstart) frames with the
#   one before, kept exactly and given to the model clean.
# - `window` (anchored): every denoising step runs over windows of `CHUNK` frames with stride
#   chunk - overlap (default overlap chunk/2) and averages what they predict for the frames they
#   share; every window but the first takes its first frame clean, the windows before it's
#   prediction of that frame.
# - `window, unanchored` (`anchor=False`): the same windows without the clean frame.

# %%
prompts = synthetic.example_prompts(NUM_PROMPTS, seed=3, motion='constant')
MODES = {'splice': dict(long_mode='splice', trim=0), 'window': dict(long_mode='window'),
         'window, unanchored': dict(long_mode='window', anchor=False)}
videos = {}
for name, mode in MODES.items():
  options = generate.options_from_config(setup.config, num_frames=NUM_FRAMES, steps=STEPS, **mode)
  videos[name] = generate.generate(setup, state.ema_params, prompts, options)
  print(name, videos[name].shape, f'overlap {generate.overlap_of(setup, options, CHUNK)}')

# %%
for name, clips in videos.items():
  print(name)
  notebook.show_videos(clips, prompts)

# %% [markdown]
# ## Does the object persist?
#
# Per mode: the share of videos whose prompted object persists, and of each way it failed
# (vanished and came back, teleported, faded out, changed colour or shape), then prompt
# adherence of the whole video (direction from the full track). A fade to black scores 0 on
# every column.

# %%
print(f'{"mode":20s} persists ' + ' '.join(f'{k:>8s}' for k in persistence.FLAGS) +
      '    color direction shape   all')
for name, clips in videos.items():
  r = persistence.judge_batch(clips, prompts, segment=CHUNK)
  print(f'{name:20s} {r["persists"]:8.2f} ' + ' '.join(f'{r[k]:8.2f}' for k in persistence.FLAGS)
        + ''.join(f' {r[k]:8.2f}' for k in ('color', 'direction', 'shape', 'all')))

# %% [markdown]
# Every video, every second frame: for each prompt three rows, splice, anchored window and
# unanchored window. Look for objects dimming and reappearing somewhere else in the third.

# %%
side_by_side = np.stack([clips[i, ::2] for i in range(len(prompts)) for clips in videos.values()])
notebook.show_image(video_io.grid(video_io.upscale(side_by_side, 64)))

# %% [markdown]
# ## Seams
#
# The mean absolute difference between consecutive frames (uint8 levels, over prompts and
# pixels) at each frame pair. With splicing, the pairs where a new chunk's frames begin
# (dashed lines) should change no more than the pairs inside chunks: the ratio is 1.0 for
# invisible seams. Sliding windows are measured at the same pairs. A video whose object fades
# out changes little anywhere, so read the ratio beside the persistence table:
# `vidiff.sample_bench` reports it for the persisting videos only.

# %%
overlap = generate.overlap_of(setup, generate.Options(num_frames=NUM_FRAMES), CHUNK)
boundaries = sample_bench.new_frame_starts(NUM_FRAMES, CHUNK, overlap)
fig, ax = plt.subplots(figsize=(9, 3.5))
for name, clips in videos.items():
  diffs = sample_bench.frame_differences(clips)
  seam, inside, ratio = sample_bench.seam_ratio(diffs, boundaries)
  print(f'{name:20s} at boundaries {seam:6.2f}  inside {inside:6.2f}  ratio {ratio:.2f}')
  ax.plot(np.arange(1, NUM_FRAMES), diffs, marker='.', label=f'{name} (ratio {ratio:.2f})')
for b in boundaries:
  ax.axvline(b, color='gray', linestyle='--', linewidth=0.8)
ax.set(xlabel='frame t (pair t-1 -> t)', ylabel='mean |frame difference|',
       title=f'{NUM_FRAMES} frames from {CHUNK}-frame chunks (splice overlap {overlap})')
ax.legend()
notebook.show_figure(fig)
