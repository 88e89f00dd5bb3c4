"""The benchmark's peer: a video-diffusion-pytorch `Unet3D` train step on torch, measured in
the same run as vidiff's U-Net (`pip install -e .[bench]`; skipped with a note otherwise).

The peer is the U-Net of Ho et al.'s Video Diffusion Models as packaged on PyPI: per level two
ResNet blocks of (1, 3, 3) convs, spatial linear attention and temporal attention, full
spatial attention in the middle. It gets the same level widths as vidiff's U-Net, the same clip
shape and batch, an eps-prediction MSE loss on a cosine schedule and an Adam step; the prompt is
a random `text_width`-d embedding per clip (its BERT conditioning is not run).
"""

import importlib.metadata
import os
import time

import numpy as np

PACKAGE = 'video-diffusion-pytorch'


def missing() -> str | None:
  """None when torch and video-diffusion-pytorch import, else why not (the note of a skip)."""
  try:
    import torch  # pylint: disable=g-import-not-at-top,unused-import
    import video_diffusion_pytorch  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError as e:
    return f'{PACKAGE} not installed ({e.name}): pip install -e ".[bench]"'
  return None


def dim_mults(channels) -> tuple[int, ...]:
  """vidiff's level widths (32, 64, 96) as the peer's dim=32 and dim_mults=(1, 2, 3)."""
  if any(c % channels[0] for c in channels):
    raise ValueError(f'the peer needs level widths that are multiples of the first: {channels}')
  return tuple(c // channels[0] for c in channels)


def step_measurement(channels, text_width: int, batch_size: int, frames: int, resolution: int,
                     warmup: int, steps: int, peak: float | None, seed: int = 0) -> dict:
  """Times the peer's train step (forward, loss, backward, Adam) on random clips
  [B, 3, T, H, W] in [-1, 1] with torch on CPU, as many threads as cores.

  Returns {'package', 'version', 'torch_version', 'threads', 'params', 'frames', 'resolution',
  'batch_size', 'step_ms', 'clips_per_s', 'flops_per_step' (torch's FlopCounterMode over one
  step: matmuls and convs, forward and backward), 'tflops_per_s', 'mfu' (against `peak`)}."""
  import torch  # pylint: disable=g-import-not-at-top
  from torch.utils import flop_counter  # pylint: disable=g-import-not-at-top
  import video_diffusion_pytorch as vdp  # pylint: disable=g-import-not-at-top

  torch.manual_seed(seed)
  torch.set_num_threads(os.cpu_count() or 1)
  unet = vdp.Unet3D(dim=channels[0], dim_mults=dim_mults(channels), cond_dim=text_width)
  diffusion = vdp.GaussianDiffusion(unet, image_size=resolution, num_frames=frames,
                                    loss_type='l2')
  optimizer = torch.optim.Adam(diffusion.parameters(), lr=1e-4)
  rng = np.random.default_rng(seed)
  clips = torch.from_numpy(rng.uniform(0, 1, (batch_size, 3, frames, resolution, resolution))
                           .astype(np.float32))  # GaussianDiffusion maps [0, 1] to [-1, 1]
  cond = torch.from_numpy(rng.standard_normal((batch_size, text_width)).astype(np.float32))

  def step():
    optimizer.zero_grad(set_to_none=True)
    loss = diffusion(clips, cond=cond)
    loss.backward()
    optimizer.step()
    return loss.item()

  counter = flop_counter.FlopCounterMode(display=False)
  with counter:
    step()
  for _ in range(warmup):
    step()
  start = time.perf_counter()
  for _ in range(steps):
    step()
  seconds = (time.perf_counter() - start) / steps
  flops = float(counter.get_total_flops()) or None
  return {'package': PACKAGE, 'version': importlib.metadata.version(PACKAGE),
          'torch_version': torch.__version__, 'threads': torch.get_num_threads(),
          'params': sum(p.numel() for p in unet.parameters()), 'frames': frames,
          'resolution': resolution, 'batch_size': batch_size, 'step_ms': 1e3 * seconds,
          'clips_per_s': batch_size / seconds, 'flops_per_step': flops,
          'tflops_per_s': flops / seconds / 1e12 if flops else None,
          'mfu': flops / seconds / peak if flops and peak else None}
