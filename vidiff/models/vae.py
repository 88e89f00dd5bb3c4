"""A temporal causal video VAE: one model for images (1 frame) and videos (1 + 4k frames).

Every conv is causal in time (the time axis is padded on the past side only) and every
GroupNorm normalises each frame on its own, so no output depends on a later frame. Time is
downsampled by strided causal convs that keep frame 0 alone and pair up the rest
(1 + 2m frames -> 1 + m), as in the CogVideoX / Open-Sora / WAN causal VAEs; the decoder
mirrors it (repeat each frame twice, drop the first copy of frame 0: 1 + m -> 1 + 2m). So the
first frame of a video is encoded exactly as the same frame given as an image, and
[B, 1 + t*k, H, W, 3] maps to [B, 1 + k, H/s, W/s, latent_channels].

`temporal_kernel=1, temporal_downsample=1` turns the same module into a per-frame image VAE
(`image_vae`), the baseline the video VAE is compared against.

Long and large videos decode in bounded memory: `decode_chunked` decodes a few latent frames
at a time, carrying each causal conv's last input frames from chunk to chunk (exactly the full
decode), and `decode_tiled` decodes overlapping spatial tiles and blends them linearly.
"""

import dataclasses
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vidiff.errors import UserError
from vidiff.models import layers


class VAEError(UserError, ValueError):
  """A video or latent shape (or a config) the VAE cannot take; the message names the fix."""


def _check(condition: bool, message: str) -> None:
  if not condition:
    raise VAEError(message)


def _log2(n: int) -> int:
  return int(n).bit_length() - 1


@dataclasses.dataclass(frozen=True)
class ConvStyle:
  """How every causal conv of a VAE pads time and starts: `time_padding` 'replicate' (the first
  frame stands in for the past, as in CogVideoX: a still video looks the same to every frame)
  or 'zeros'; `init` 'default' (lecun normal on every tap) or 'center' (on the current frame's
  tap only: the video VAE starts out as the per-frame 2D VAE)."""
  time_padding: str = 'replicate'
  init: str = 'center'


class CausalConv(nn.Module):
  """`layers.conv`, causal in time. x: [B, T, H, W, Cin] -> [B, T', H', W', features].

  While the 'cache' collection is mutable (chunked decoding, time stride 1), the conv sees the
  last kt - 1 input frames of its previous call in place of zero padding and stores its own
  last kt - 1 input frames for the next call: chunk after chunk it computes the full conv.
  """
  features: int
  kernel: tuple[int, int, int]
  strides: tuple[int, int, int] = (1, 1, 1)
  style: ConvStyle = ConvStyle()
  dtype: layers.Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    style = self.style
    conv = layers.conv(self.features, self.kernel, strides=self.strides, causal=True,
                       init=style.init, time_padding=style.time_padding, dtype=self.dtype,
                       name='conv')
    past_len = self.kernel[0] - 1
    if past_len == 0 or not self.is_mutable_collection('cache') or self.is_initializing():
      return conv(x)
    assert self.strides[0] == 1, 'a conv carrying state between chunks must not stride time'
    first = lambda: (jnp.repeat(x[:, :1], past_len, axis=1) if style.time_padding == 'replicate'
                     else jnp.zeros((x.shape[0], past_len, *x.shape[2:]), x.dtype))
    past = self.variable('cache', 'past', first)  # the first chunk pads as a full decode does
    xp = jnp.concatenate([past.value, x], axis=1)
    past.value = xp[:, -past_len:]
    return conv(xp)[:, past_len:]


CONVS = ('3d', '2plus1d')


class ResBlock(nn.Module):
  """Per-frame GroupNorm, SiLU, causal conv, twice; residual. `conv` '3d': (kt, 3, 3) convs;
  '2plus1d': each a (1, 3, 3) conv then a causal (kt, 1, 1) one (12 C^2 weights at kt = 3
  where a 3x3x3 conv has 27 and a 2D one 9: a wider VAE at the same size).

  x: [B, T, H, W, Cin] -> [B, T, H, W, features].
  """
  features: int
  temporal_kernel: int = 3
  groups: int = 8
  style: ConvStyle = ConvStyle()
  dtype: layers.Dtype = jnp.float32
  conv: str = '3d'

  def _conv(self, h, name: str):
    kt = self.temporal_kernel
    if self.conv == '3d' or kt == 1:
      return CausalConv(self.features, (kt, 3, 3), style=self.style, dtype=self.dtype, name=name)(h)
    h = CausalConv(self.features, (1, 3, 3), style=self.style, dtype=self.dtype,
                   name=f'{name}_space')(h)
    return CausalConv(self.features, (kt, 1, 1), style=self.style, dtype=self.dtype,
                      name=f'{name}_time')(h)

  @nn.compact
  def __call__(self, x):
    x = layers.constrain(x, layers.VIDEO)
    h = nn.silu(layers.GroupNorm(self.groups, self.dtype, name='norm1')(x))
    h = self._conv(h, 'conv1')
    h = nn.silu(layers.GroupNorm(self.groups, self.dtype, name='norm2')(h))
    h = self._conv(h, 'conv2')
    if x.shape[-1] != self.features:
      x = layers.conv(self.features, (1, 1, 1), dtype=self.dtype, name='skip')(x)
    return x + h


def upsample(x: jax.Array, time: bool, first: bool) -> jax.Array:
  """Nearest-neighbour doubling of (h, w), and of t when `time`. [B, T, H, W, C] ->
  [B, T', 2H, 2W, C] with T' = 2T - 1 when `first` (the chunk starts the video: its frame 0
  stays one frame, 1 + m -> 1 + 2m), T' = 2T otherwise, T' = T without `time`."""
  x = jnp.repeat(jnp.repeat(x, 2, axis=2), 2, axis=3)
  if time:
    x = jnp.repeat(x, 2, axis=1)[:, 1 if first else 0:]
  return x


class Encoder(nn.Module):
  """[B, T, H, W, 3] -> [B, T', H/2^n, W/2^n, out_channels], n = len(channel_mult) - 1.

  Level i has channels * channel_mult[i] features; after each level but the last a stride-2
  causal conv halves (h, w), and t (1 + 2m -> 1 + m) where `time_strides[i]`.
  """
  channels: int
  channel_mult: Sequence[int]
  num_res_blocks: int
  out_channels: int
  time_strides: Sequence[bool]
  temporal_kernel: int = 3
  groups: int = 8
  style: ConvStyle = ConvStyle()
  dtype: layers.Dtype = jnp.float32
  conv: str = '3d'

  @nn.compact
  def __call__(self, x):
    kernel = (self.temporal_kernel, 3, 3)
    conv = lambda ch, name, strides=(1, 1, 1): CausalConv(ch, kernel, strides, self.style,
                                                          self.dtype, name=name)
    block = lambda ch, name: ResBlock(ch, self.temporal_kernel, self.groups, self.style,
                                      self.dtype, self.conv, name=name)
    h = conv(self.channels * self.channel_mult[0], 'conv_in')(x)
    for lvl, mult in enumerate(self.channel_mult):
      for i in range(self.num_res_blocks):
        h = block(self.channels * mult, f'down_{lvl}_res_{i}')(h)
      if lvl < len(self.channel_mult) - 1:
        h = conv(h.shape[-1], f'down_{lvl}_sample', (2 if self.time_strides[lvl] else 1, 2, 2))(h)
    h = block(h.shape[-1], 'mid_res_0')(h)
    h = block(h.shape[-1], 'mid_res_1')(h)
    h = nn.silu(layers.GroupNorm(self.groups, self.dtype, name='norm_out')(h))
    return conv(self.out_channels, 'conv_out')(h)


class Decoder(nn.Module):
  """The encoder's mirror: [B, L, h, w, C] -> [B, T, h*2^n, w*2^n, out_channels] (linear output).

  `first`: z starts the video (its frame 0 becomes one frame); False for later chunks of
  `decode_chunked`.
  """
  channels: int
  channel_mult: Sequence[int]
  num_res_blocks: int
  out_channels: int
  time_strides: Sequence[bool]
  temporal_kernel: int = 3
  groups: int = 8
  style: ConvStyle = ConvStyle()
  dtype: layers.Dtype = jnp.float32
  conv: str = '3d'

  @nn.compact
  def __call__(self, z, first: bool = True):
    kernel = (self.temporal_kernel, 3, 3)
    conv = lambda ch, name: CausalConv(ch, kernel, style=self.style, dtype=self.dtype, name=name)
    block = lambda ch, name: ResBlock(ch, self.temporal_kernel, self.groups, self.style,
                                      self.dtype, self.conv, name=name)
    h = conv(self.channels * self.channel_mult[-1], 'conv_in')(z)
    h = block(h.shape[-1], 'mid_res_0')(h)
    h = block(h.shape[-1], 'mid_res_1')(h)
    for lvl in reversed(range(len(self.channel_mult))):
      for i in range(self.num_res_blocks + 1):
        h = block(self.channels * self.channel_mult[lvl], f'up_{lvl}_res_{i}')(h)
      if lvl > 0:
        h = upsample(h, self.time_strides[lvl - 1], first)
        h = conv(h.shape[-1], f'up_{lvl}_sample')(h)
    h = nn.silu(layers.GroupNorm(self.groups, self.dtype, name='norm_out')(h))
    return conv(self.out_channels, 'conv_out')(h).astype(jnp.float32)


class CausalVAE(nn.Module):
  """Causal video VAE. x: [B, 1 + t*k, H, W, 3] in [-1, 1] <-> z: [B, 1 + k, H/s, W/s, C].

  s = `spatial_downsample` = 2 ** (len(channel_mult) - 1); t = `temporal_downsample` (1, 2 or
  4): time is halved at the last log2(t) downsamplings. `kl`: a diagonal Gaussian posterior
  (encode returns (mean, logvar)); otherwise a deterministic bottleneck (logvar is None).
  `temporal_kernel=1` (with t=1) makes every conv 2D: a per-frame image VAE (`image_vae`).
  `conv`: the residual blocks' convs, '3d' or '2plus1d' (see ResBlock).
  Build parameters with `model.init(rng, x)['params']`.
  """
  channels: int = 32
  channel_mult: Sequence[int] = (1, 2, 4, 4)
  num_res_blocks: int = 2
  latent_channels: int = 4
  spatial_downsample: int = 8
  temporal_downsample: int = 4
  temporal_kernel: int = 3
  kl: bool = True
  groups: int = 8
  time_padding: str = 'replicate'
  conv_init: str = 'center'
  conv: str = '3d'
  out_channels: int = 3
  dtype: layers.Dtype = jnp.float32

  def setup(self):
    self.check_config()
    levels = len(self.channel_mult) - 1
    time_levels = _log2(self.temporal_downsample)
    strides = tuple(i >= levels - time_levels for i in range(levels))
    shared = dict(channels=self.channels, channel_mult=tuple(self.channel_mult),
                  num_res_blocks=self.num_res_blocks, time_strides=strides,
                  temporal_kernel=self.temporal_kernel, groups=self.groups,
                  style=ConvStyle(self.time_padding, self.conv_init), dtype=self.dtype,
                  conv=self.conv)
    moments = self.latent_channels * (2 if self.kl else 1)
    self.encoder = Encoder(out_channels=moments, **shared)
    self.decoder = Decoder(out_channels=self.out_channels, **shared)

  def check_config(self) -> None:
    """Raises VAEError unless the factors fit channel_mult and the temporal kernel."""
    s, t, levels = self.spatial_downsample, self.temporal_downsample, len(self.channel_mult) - 1
    _check(s in (1, 2, 4, 8, 16, 32), f'vae spatial_downsample={s}; use a power of 2 (4 or 8).')
    _check(_log2(s) == levels,
           f'vae spatial_downsample={s} needs log2({s}) = {_log2(s)} downsamplings, i.e. '
           f'{_log2(s) + 1} channel_mult entries, but channel_mult={tuple(self.channel_mult)} has '
           f'{levels + 1}: set spatial_downsample={2 ** levels} or give {_log2(s) + 1} entries.')
    _check(t in (1, 2, 4, 8) and _log2(t) <= levels,
           f'vae temporal_downsample={t}; use 1, 2 or 4 (and at most spatial_downsample={s}).')
    _check(self.temporal_kernel >= 1 and (self.temporal_kernel > 1 or t == 1),
           f'vae temporal_kernel={self.temporal_kernel} with temporal_downsample={t}: a per-frame '
           f'(temporal_kernel=1) VAE cannot downsample time; set temporal_downsample=1.')
    _check(self.time_padding in layers.TIME_PADDINGS,
           f'vae time_padding={self.time_padding!r}; use one of {layers.TIME_PADDINGS}.')
    _check(self.conv in CONVS, f'vae conv={self.conv!r}; use one of {CONVS}.')
    _check(self.conv_init in ('default', 'center'),
           f"vae conv_init={self.conv_init!r}; use 'default' or 'center'.")

  def check_video(self, shape: Sequence[int]) -> None:
    """Raises VAEError naming the fix unless a video of `shape` [B, T, H, W, C] can be encoded."""
    _check(len(shape) == 5, 'the VAE takes videos [batch, time, height, width, channels]; '
                            f'got shape {tuple(shape)}.')
    t, (frames, height, width), s = self.temporal_downsample, shape[1:4], self.spatial_downsample
    valid = f'the VAE takes 1 + {t}k frames (1, {1 + t}, {1 + 2 * t}, ...)'
    _check(frames >= 1, f'{valid}; got {frames} frames: give at least 1 frame.')
    if (frames - 1) % t:
      down, up = 1 + (frames - 1) // t * t, 1 + -(-(frames - 1) // t) * t
      raise VAEError(f'{valid}; got {frames}: trim the clip to {down} frames or pad it to {up} '
                     f'(e.g. data.num_frames={up}).')
    _check(height % s == 0 and width % s == 0,
           f'frame size {height}x{width} is not divisible by the VAE spatial factor {s}: resize or '
           f'crop to {max(height // s, 1) * s}x{max(width // s, 1) * s} '
           f'(data.resolution a multiple of {s}).')

  def latent_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
    """[B, 1 + t*k, H, W, C] -> [B, 1 + k, H/s, W/s, latent_channels] (checked)."""
    self.check_video(shape)
    b, frames, h, w, _ = shape
    s = self.spatial_downsample
    return (b, 1 + (frames - 1) // self.temporal_downsample, h // s, w // s, self.latent_channels)

  def num_frames(self, latent_frames: int) -> int:
    """Frames decoded from `latent_frames` latent frames: 1 + t * (latent_frames - 1)."""
    return 1 + self.temporal_downsample * (latent_frames - 1)

  def encode(self, x):
    """x: [B, T, H, W, 3] -> (mean, logvar), each [B, 1 + (T-1)/t, H/s, W/s, latent_channels];
    logvar is None for a deterministic (kl=False) VAE."""
    self.check_video(x.shape)
    moments = self.encoder(x).astype(jnp.float32)
    if not self.kl:
      return moments, None
    mean, logvar = jnp.split(moments, 2, axis=-1)
    return mean, jnp.clip(logvar, -30., 20.)

  def decode(self, z, first: bool = True):
    """z: [B, L, h, w, latent_channels] -> [B, 1 + t(L-1), h*s, w*s, 3] (or t*L frames when
    not `first`, a later chunk of `decode_chunked`)."""
    _check(z.ndim == 5 and z.shape[-1] == self.latent_channels,
           f'the VAE decodes latents [batch, time, height, width, {self.latent_channels}]; '
           f'got shape {z.shape}.')
    return self.decoder(z, first)

  def __call__(self, x, sample_rng: jax.Array | None = None):
    """x: [B, T, H, W, 3] -> (recon [B, T, H, W, 3], mean, logvar). z is sampled from the
    posterior when `sample_rng` is given (and kl), else it is the mean."""
    mean, logvar = self.encode(x)
    z = mean
    if sample_rng is not None and logvar is not None:
      z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(sample_rng, mean.shape)
    return self.decode(z), mean, logvar


def image_vae(model: CausalVAE, match_params: bool = False) -> CausalVAE:
  """The per-frame (2D) VAE built from `model`'s config: every conv (1, 3, 3), no temporal
  downsampling, the same parameter tree (kernels with one time tap). `match_params` widens
  it by sqrt(temporal_kernel) (in multiples of `groups`) to about the video VAE's size."""
  channels = model.channels
  if match_params:
    channels = max(1, round(channels * model.temporal_kernel ** 0.5 / model.groups)) * model.groups
  return model.clone(temporal_kernel=1, temporal_downsample=1, channels=channels, conv='3d')


def decode_chunked(model: CausalVAE, params, z: jax.Array, chunk: int) -> jax.Array:
  """Decodes z [B, 1 + k, h, w, C] `chunk` latent frames at a time -> the frames of `decode`.

  The first call decodes latent frame 0 with the k % chunk frames after it; a `fori_loop` then
  decodes the rest in chunks of `chunk`, passing every causal conv's last kt - 1 input frames
  (the 'cache' collection, of fixed size) to the next chunk and writing each chunk's frames in
  place into the output, so the result equals a full decode and memory is the output plus
  that of decoding `chunk` latent frames (flat in the video length). Jit-friendly (static
  shapes); jit it with `model` and `chunk` static.
  """
  _check(chunk >= 1, f'decode chunk={chunk}; use at least 1 latent frame per chunk.')
  b, length = z.shape[:2]
  n, rest = divmod(length - 1, chunk)
  head, cache = model.apply({'params': params}, z[:, :1 + rest], method=CausalVAE.decode,
                            mutable=['cache'])
  if n == 0:
    return head
  frames_per_chunk = model.temporal_downsample * chunk
  out = jnp.zeros((b, head.shape[1] + n * frames_per_chunk, *head.shape[2:]), head.dtype)
  out = jax.lax.dynamic_update_slice_in_dim(out, head, 0, axis=1)

  def step(i, carry):
    state, out = carry
    z_chunk = jax.lax.dynamic_slice_in_dim(z, 1 + rest + i * chunk, chunk, axis=1)
    frames, state = model.apply({'params': params, **state}, z_chunk, first=False,
                                method=CausalVAE.decode, mutable=['cache'])
    start = head.shape[1] + i * frames_per_chunk
    return state, jax.lax.dynamic_update_slice_in_dim(out, frames, start, axis=1)

  _, out = jax.lax.fori_loop(0, n, step, (cache, out))
  return out


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
  """Start offsets of tiles of `tile` covering [0, size), neighbours overlapping by at least
  `overlap`; the last tile ends at `size`."""
  if tile >= size:
    return [0]
  step = tile - overlap
  return sorted(set(range(0, size - tile, step)) | {size - tile})


def blend_weights(tile: int, overlap: int) -> np.ndarray:
  """[tile] weights rising linearly over `overlap` pixels at both ends (never 0)."""
  i = np.arange(tile)
  return np.clip(np.minimum(i + 1, tile - i) / (overlap + 1), 0, 1).astype(np.float32)


def decode_tiled(model: CausalVAE, params, z: jax.Array, tile: int, overlap: int,
                 chunk: int | None = None) -> jax.Array:
  """Decodes z [B, L, h, w, C] in tiles of tile x tile latent pixels -> [B, T, h*s, w*s, 3].

  Neighbouring tiles overlap by `overlap` latent pixels (at least; the last tile of a row
  ends at the edge) and are blended with linear ramps over the overlap, so seams fade out.
  The result is close to, not equal to, the full decode: convs near a tile border and each
  frame's GroupNorm statistics see only the tile. `chunk` also decodes each tile `chunk`
  latent frames at a time (`decode_chunked`). Jit it with `model`, `tile`, `overlap` static.
  """
  if chunk:
    decode = lambda zt: decode_chunked(model, params, zt, chunk)
  else:
    decode = lambda zt: model.apply({'params': params}, zt, method=CausalVAE.decode)
  return blend_tiles(decode, z, tile, overlap, model.spatial_downsample,
                     model.num_frames(z.shape[1]), model.out_channels)


def blend_tiles(decode, z: jax.Array, tile: int, overlap: int, scale: int, frames: int,
                channels: int) -> jax.Array:
  """`decode` ([B, L, th, tw, C] -> [B, frames, th*scale, tw*scale, channels]) applied to
  overlapping tiles of z [B, L, h, w, C], blended linearly: [B, frames, h*scale, w*scale,
  channels]. A `lax.scan` over the tiles keeps one tile's activations live at a time.
  """
  _check(0 <= overlap < tile, f'decode tile={tile}, overlap={overlap}: need 0 <= overlap < tile.')
  b, length, h, w, c = z.shape
  th, tw = min(tile, h), min(tile, w)
  starts = [(y, x) for y in tile_starts(h, th, overlap) for x in tile_starts(w, tw, overlap)]
  weight = np.outer(blend_weights(th * scale, overlap * scale),
                    blend_weights(tw * scale, overlap * scale))
  total = np.zeros((h * scale, w * scale), np.float32)
  for y, x in starts:
    total[y * scale:(y + th) * scale, x * scale:(x + tw) * scale] += weight

  def step(acc, start):
    at = (0, 0, start[0] * scale, start[1] * scale, 0)
    out = decode(jax.lax.dynamic_slice(z, (0, 0, start[0], start[1], 0), (b, length, th, tw, c)))
    summed = jax.lax.dynamic_slice(acc, at, out.shape) + out * weight[:, :, None]
    return jax.lax.dynamic_update_slice(acc, summed, at), None

  out_shape = (b, frames, h * scale, w * scale, channels)
  acc, _ = jax.lax.scan(step, jnp.zeros(out_shape, jnp.float32), jnp.asarray(starts, jnp.int32))
  return acc / total[:, :, None]
