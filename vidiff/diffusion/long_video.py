"""Videos longer than the model was trained on: latent splicing, sliding windows, FreeNoise.

A model trained on clips of C frames samples N > C frames in one of two ways:

1. Splicing (`splice`): chunks of C frames, each starting `C - overlap` frames after the last.
   The first `overlap` frames of chunk k+1 are the last frames of chunk k, and chunk k+1 is
   conditioned on them as *clean frames* (`condition_on_known`): the model sees them exactly,
   with time 0, as it saw clean leading frames in training (`diffusion.context`, Open-Sora's
   mask strategy). We pick this over replace-and-renoise because replacement only imposes the
   known frames through the noisy state, and the rest of the chunk barely follows: on the
   quickstart U-Net the frame difference at chunk boundaries was 1.9x the one inside chunks
   with replacement (`python -m vidiff.sample_bench`); Ho et al. 2022 ("Video Diffusion Models",
   sec. 3.1) report the same incoherence. A model trained without context frames
   (`diffusion.context.prob = 0`) still gets replacement (`replace_known`), which needs no
   training. Either way the known frames of the state are also replaced at every step, with the
   video's own fixed noise, so each chunk follows one deterministic path with DDIM.
   The last chunk ends at frame N (its overlap grows), so every chunk has the same shape and the
   sampler compiles once.
2. Sliding windows (`windowed_denoise_fn`): at every step the model denoises overlapping
   windows of C frames and the predictions are averaged over the frames they share, weighted
   towards each window's centre (MultiDiffusion / FreeNoise window fusion). Windows shift by one
   frame per step, so their edges never stay on the same frames. One pass over all N frames,
   every window sees frame positions 0..C-1 as in training. Anchored (the default for a model
   trained with context frames), every window but the first also gets its first frames clean
   (as many as the model learned to continue): the x0 that the windows before it predicted
   there at this step. Free windows that see no clean frame each draw the object where they
   like, and their average fades it out and back in elsewhere (`vidiff.sample_bench`'s
   'unanchored' row; docs/long_videos.md).

`freenoise` (Qiu et al. 2023, arXiv:2310.15169) reschedules the initial noise so frames beyond the
first window reuse shuffled copies of earlier noise: long-range content stays consistent.
"""

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from vidiff.diffusion import objectives
from vidiff.errors import check


def check_chunks(num_frames: int, chunk_frames: int, overlap: int, trim: int = 0) -> None:
  """UserError unless num_frames >= chunk_frames > overlap + trim, overlap >= 0, trim >= 0."""
  check(chunk_frames >= 1, f'chunk_frames={chunk_frames} must be >= 1.')
  check(0 <= overlap < chunk_frames,
        f'overlap={overlap} must be in [0, chunk_frames={chunk_frames}): each chunk needs new '
        f'frames; use e.g. --overlap={chunk_frames // 4}.')
  check(trim >= 0 and overlap + trim < chunk_frames,
        f'trim={trim} with overlap={overlap} leaves a chunk of {chunk_frames} frames no new '
        f'frames: overlap + trim must be below chunk_frames; use e.g. --trim={chunk_frames // 4}.')
  check(num_frames >= chunk_frames,
        f'num_frames={num_frames} is smaller than one chunk (chunk_frames={chunk_frames}); '
        f'pass --num_frames >= {chunk_frames} or --chunk_frames <= {num_frames}.')


def chunk_starts(num_frames: int, chunk_frames: int, overlap: int, trim: int = 0) -> list[int]:
  """First frame of each chunk (chunks share overlap + trim frames); the last chunk ends at
  `num_frames`."""
  check_chunks(num_frames, chunk_frames, overlap, trim)
  step = chunk_frames - overlap - trim
  starts = list(range(0, num_frames - chunk_frames + 1, step))
  if starts[-1] + chunk_frames < num_frames:
    starts.append(num_frames - chunk_frames)
  return starts


def replace_known(known, mask, noise, schedule):
  """project(x, t) for the samplers: frames where `mask` [T] is 1 become alpha_t known +
  sigma_t noise (exactly `known` at t = 0). known, noise, x: [B, T, H, W, C]."""
  keep = mask.astype(bool)[None, :, None, None, None]

  def project(x, t):
    alpha, sigma = schedule.marginal(t)
    return jnp.where(keep, (alpha * known + sigma * noise).astype(x.dtype), x)
  return project


def condition_on_known(denoise_fn, known, mask, noise):
  """A denoise_fn that gives the model the frames where `mask` [T] is 1 clean (= `known`) with
  per-frame time 0, and returns (known, noise) there. denoise_fn(x [B, T, ...], t [B, T]);
  known, noise: [B, T, ...]."""
  keep = mask.astype(bool)[None, :, None, None, None]

  def denoise(x, t):
    t_frames = jnp.where(mask.astype(bool)[None, :], 0., t[:, None])
    x0, eps = denoise_fn(jnp.where(keep, known, x), t_frames)
    return jnp.where(keep, known, x0), jnp.where(keep, noise, eps)
  return denoise


def reconstruction_guided(denoise_fn, known, mask, weight: float, schedule):
  """Reconstruction guidance (Ho et al. 2022, "Video Diffusion Models", eq. 7) for a model
  trained without clean context frames: the known frames stay noisy in the model's input, and
  x0_hat of the other frames moves by weight * alpha_t * J^T (known - x0_hat) over the known
  frames (J = d x0_hat / d x_t: minus the gradient of weight * alpha_t / 2 * ||known -
  x0_hat||^2), so they agree with what the model would have to predict for the known frames to
  come out right. One extra backward pass per call. denoise_fn(x, t [B]);
  known: [B, T, ...]; mask: [T]. eps_hat is recomputed so x_t = alpha x0_hat + sigma eps_hat."""
  keep = mask.astype(bool)[None, :, None, None, None]

  def denoise(x, t):
    (x0, eps), pullback = jax.vjp(lambda y: denoise_fn(y, t), x)
    residual = jnp.where(keep, known - x0, 0.).astype(x0.dtype)
    grad = pullback((residual, jnp.zeros_like(eps)))[0]
    alpha, sigma = (objectives.expand(a, x) for a in schedule.alpha_sigma(t))
    x0 = jnp.where(keep, x0, x0 + weight * alpha * grad)
    return x0, ((x - alpha * x0) / sigma).astype(x.dtype)
  return denoise


def splice(sample_chunk, noise: np.ndarray, chunk_frames: int, overlap: int, known=None,
           mask=None, progress: bool = True, trim: int = 0) -> np.ndarray:
  """Samples a long video chunk by chunk.

  Each chunk continues `overlap` frames of the one before. `trim` > 0 drops the last `trim`
  frames of every chunk but the last, and the next chunk samples them anew: its context
  frames then come from inside the previous chunk rather than from its end, where a model's
  motion can slow (the clip's last frames see no future).

  sample_chunk(noise [B, C, ...], known [B, C, ...], mask [C], index) -> chunk [B, C, ...]
  (numpy) for the index-th chunk, which must return the frames where mask is 1 unchanged.
  noise: [B, N, H, W, 3], the video's initial noise (chunk k uses its frames). known/mask:
  frames given up front (e.g. an init image at frame 0), or None. Returns [B, N, H, W, 3].
  """
  num_frames = noise.shape[1]
  video = np.zeros(noise.shape, np.float32) if known is None else np.array(known, np.float32)
  done = np.zeros(num_frames, bool) if mask is None else np.array(mask, bool)
  starts = chunk_starts(num_frames, chunk_frames, overlap, trim)
  for index, start in enumerate(tqdm(starts, desc='chunks', leave=False, disable=not progress)):
    frames = slice(start, start + chunk_frames)
    video[:, frames] = sample_chunk(noise[:, frames], video[:, frames],
                                    done[frames].astype(np.float32), index)
    done[frames] = True
    if index < len(starts) - 1 and trim:
      done[start + chunk_frames - trim:start + chunk_frames] = False  # the next chunk redraws them
  return video


def window_count(num_frames: int, window: int, stride: int) -> int:
  """How many windows `window_starts` returns."""
  return -(-(num_frames - window) // stride) + 2


def window_starts(num_frames: int, window: int, stride: int, offset):
  """Start frames [count] of windows `stride` apart, shifted back by `offset` (0 <= offset <
  stride) and clipped into the video; they cover every frame for any offset."""
  count = window_count(num_frames, window, stride)
  return jnp.clip(jnp.arange(count) * stride - offset, 0, num_frames - window)


def window_weights(window: int):
  """[window] fusion weights: 1, 2, ... towards the centre, so a frame's prediction comes
  mostly from windows where it has context on both sides."""
  f = jnp.arange(window)
  return jnp.minimum(f + 1, window - f).astype(jnp.float32)


def windowed_denoise_fn(denoise_fn, num_frames: int, window: int, stride: int, steps: int,
                        anchor: int = 0):
  """A denoise_fn over [B, num_frames, ...] built from one over [B, window, ...] windows, which
  it runs one after another (a `lax.scan`: one compiled model call for any number of them).

  At sampler step i (recovered from t on the `steps` grid) the windows are shifted back by
  i mod stride frames; x0 and eps are averaged over windows with `window_weights` (both are
  linear in x_t, so x_t = alpha x0 + sigma eps still holds). t: [B] or per frame [B, frames].
  anchor > 0: every window but the first gets its first `anchor` frames clean (time 0), the
  average of the x0 the windows before it predicted for them at this step, as a model trained
  with clean context frames (`diffusion.context`) learned to continue; their own predictions
  are left out of the average. Without it, windows that see no clean frame draw the object
  where they like, and averaging their disagreeing predictions fades it out. Needs
  anchor <= window - stride, so that the windows before cover those frames.
  """
  check(0 < stride <= window <= num_frames,
        f'sliding windows need 0 < stride={stride} <= window={window} <= num_frames={num_frames}.')
  check(0 <= anchor <= window - stride,
        f'anchor={anchor} clean frames per window need an overlap of at least {anchor} frames '
        f'between windows (window={window}, stride={stride}).')
  weights = window_weights(window)[None, :, None, None, None]
  take = lambda a, s: jax.lax.dynamic_slice_in_dim(a, s, window, axis=1)

  def denoise(x, t):
    step = jnp.round((1. - jnp.max(t)) * steps).astype(jnp.int32)
    starts = window_starts(num_frames, window, stride, step % stride)
    t = t if t.ndim == 2 else jnp.broadcast_to(t[:, None], x.shape[:2])

    def add(sums, start):
      x0_sum, eps_sum, weight_sum = sums
      frames, times, w = take(x, start), take(t, start), weights
      if anchor:  # the first frames: clean, from the windows before (none before the first)
        seen = take(weight_sum, start)[:, :anchor]
        on = (start > 0) & jnp.all(seen > 0)
        estimate = take(x0_sum, start)[:, :anchor] / jnp.maximum(seen, 1e-12)
        frames = frames.at[:, :anchor].set(
            jnp.where(on, estimate, frames[:, :anchor]).astype(x.dtype))
        times = times.at[:, :anchor].set(jnp.where(on, 0., times[:, :anchor]))
        w = w.at[:, :anchor].set(jnp.where(on, 0., w[:, :anchor]))
      x0, eps = denoise_fn(frames, times)
      put = lambda total, value: jax.lax.dynamic_update_slice_in_dim(
          total, take(total, start) + w * value, start, axis=1)
      return (put(x0_sum, x0), put(eps_sum, eps), put(weight_sum, jnp.ones_like(w))), None

    zeros = jnp.zeros(x.shape, jnp.float32)
    init = (zeros, zeros, jnp.zeros((1, num_frames, 1, 1, 1), jnp.float32))
    x0_sum, eps_sum, weight_sum = jax.lax.scan(add, init, starts)[0]
    return (x0_sum / weight_sum).astype(x.dtype), (eps_sum / weight_sum).astype(x.dtype)
  return denoise


def freenoise(noise: np.ndarray, window: int, stride: int, seed: int = 0) -> np.ndarray:
  """FreeNoise noise rescheduling. noise: [B, N, ...] -> [B, N, ...] where the first `window`
  frames are kept and each following block of `stride` frames is a shuffled copy of the block
  `window` frames earlier (the FreeNoise reference implementation's scheme)."""
  rng = np.random.default_rng(seed)
  out = np.array(noise)
  for start in range(window, out.shape[1], stride):
    source = np.arange(start - window, start - window + stride)
    rng.shuffle(source)
    block = out[:, source]
    out[:, start:start + stride] = block[:, :out.shape[1] - start]
  return out
