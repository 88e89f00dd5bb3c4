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
# <a href="https://colab.research.google.com/github/vidiff/vidiff/blob/main/colabs/unet_vs_st_transformer.ipynb" target="_parent"><img src="https://colab.research.google.com/assets/colab-badge.svg" alt="Open In Colab"/></a>
#
# # 3D U-Net vs ST-Transformer
#
# `python -m vidiff.bench` measures the two backbone families of vidiff at matched parameter
# counts, one after the other on the same device: the 3D U-Net with 3x3x3 (`unet3d-3d`) or
# (2+1)D convs (`unet3d-2plus1d`), and the ST-Transformer with factorized (`st-factorized`) or
# joint space-time attention (`st-joint`). Per variant: train-step compile time, step time,
# FLOPs (XLA's cost analysis), MFU, peak memory and sampling time; then how step time and memory
# grow with the number of frames and with resolution, and MFU with the ST-Transformer's width;
# on CPU, video-diffusion-pytorch's U-Net beside vidiff's when `pip install -e ".[bench]"` put
# it there.
#
# The default here is the `cpu-small` preset (about 9 minutes on a 2-core CPU runtime).
# `PRESET = 'cpu-quality'` trains one model per family for the same 4 minutes of train steps
# and scores their samples (prompt adherence, FVD, warping error; about 13 minutes). On a GPU or
# TPU runtime set `PRESET = 'gpu'` (sizes small and base in bf16, resolution up to 256, and
# the equal-compute training with FVD; much longer). `VIDIFF_SMOKE=1` runs the `tiny` preset
# (two variants, small shapes).

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
# VIDIFF_SMOKE=1: the tiny preset, compiled fast, on CPU (CI runs this).
from vidiff import notebook  # before jax: a smoke run sets XLA flags

SMOKE = notebook.smoke()

import pathlib

import jax
import matplotlib.pyplot as plt
from IPython.display import Image, Markdown, display

from configs import bench as bench_configs
from vidiff import bench

PRESET = 'tiny' if SMOKE else 'cpu-small'  # or 'cpu-quality'; 'gpu' on a GPU / TPU runtime
OUT = pathlib.Path('vidiff_bench').resolve()
print(f'smoke: {SMOKE}; preset: {PRESET}; devices: {jax.devices()}; output: {OUT}')


# %% [markdown]
# ## The preset
#
# Presets live in `configs/bench/`: which variants and model sizes, the clip shape and batch of
# the train-step row, the frame, resolution and width sweeps, the peer, and the equal-compute
# quality run.

# %%
config = bench_configs.get_config(PRESET)
print(config)

# %% [markdown]
# ## Run it
#
# `bench.run` is what `python -m vidiff.bench --out=DIR --preset=...` calls. It writes
# `bench.json` (device, jax version, config hash, every number), `bench.md` (the tables) and the
# plots to `OUT`. Most of a CPU run is compiling.

# %%
record = bench.run(config, OUT, progress=not SMOKE)
print(f'{record["wall_s"]:.0f} s on {record["device"]["device_kind"]}; files: '
      f'{sorted(p.name for p in OUT.iterdir())}')

# %% [markdown]
# ## The tables (`bench.md`)
#
# Ratios are against `unet3d-2plus1d` of the same size. In the sweeps, "exp." is the log-log
# slope of step time or memory against frames (or pixels): about 1 for linear growth, 2 for
# quadratic (joint space-time attention over frames).

# %%
display(Markdown((OUT / 'bench.md').read_text()))

# %% [markdown]
# ## The plots
#
# Step time and peak memory of the denoiser's forward + backward pass against frames and
# against resolution (and, after a quality run, loss against FLOPs spent).

# %%
for png in sorted(OUT.glob('*.png')):
  print(png.name)
  display(Image(filename=str(png)))

# %% [markdown]
# The same numbers from `bench.json`, side by side per variant:

# %%
variants = record['variants']
names = [f'{v["variant"]}\n{v["size"]}' for v in variants]
panels = (('params (M)', lambda v: v['params'] / 1e6),
          ('train step ms', lambda v: v['train_step']['step_ms']),
          ('peak MiB', lambda v: v['train_step']['peak_mib']),
          ('s / video @ 50 steps', lambda v: v['sampling']['s_per_video_at_50']))
fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2))
for ax, (title, value) in zip(axes, panels):
  colors = ['tab:blue' if v['variant'].startswith('unet3d') else 'tab:orange' for v in variants]
  ax.bar(range(len(variants)), [value(v) for v in variants], color=colors)
  ax.set_xticks(range(len(variants)), names, fontsize=8)
  ax.set_title(title)
notebook.show_figure(fig)
