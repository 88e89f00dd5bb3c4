"""Building blocks shared by the backbones: partitioned dense/conv, norms, attention, embeddings.

Every parameter carries logical axis names and every attention goes through `attention`,
so a kernel (cuDNN flash, splash) can be swapped in one place.
"""

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from vidiff.errors import check

Dtype = Any
Names = tuple[str | None, ...]

# Activation layouts ([B, T, H, W, C]) by what the next op needs to see whole.
VIDEO = ('act_batch', 'act_time', 'act_height', 'act_width', 'act_embed')
# Spatial ops see full frames: the rows are gathered and the frames spread over more devices.
FRAMES = ('act_batch', 'act_frames', None, None, 'act_embed')
# Temporal ops see all frames: time is gathered and the rows spread over more devices.
PIXELS = ('act_batch', None, 'act_rows', 'act_width', 'act_embed')


def constrain(x: jax.Array, names: Names) -> jax.Array:
  """Applies a logical sharding constraint (a no-op outside a mesh context)."""
  return nn.with_logical_constraint(x, names)


def partitioned(init: Callable, names: Names) -> Callable:
  return nn.with_logical_partitioning(init, names)


def transplant(source, target, leaf_fn: Callable):
  """The param tree `target` with each leaf that `source` also has (same dict path) replaced
  by `leaf_fn(source_leaf, target_leaf, path)` on unboxed arrays; nn.Partitioned boxes of
  `target` are kept, leaves `source` lacks are left as they are."""
  flat_source = flax.traverse_util.flatten_dict(flax.core.unfreeze(source))
  flat_target = flax.traverse_util.flatten_dict(flax.core.unfreeze(target))
  unbox = lambda v: v.value if isinstance(v, nn.Partitioned) else v

  def leaf(path, value):
    if path not in flat_source:
      return value
    out = leaf_fn(unbox(flat_source[path]), unbox(value), path)
    return value.replace_boxed(out) if isinstance(value, nn.Partitioned) else out

  return flax.traverse_util.unflatten_dict({p: leaf(p, v) for p, v in flat_target.items()})


def dense(features: int, names: tuple[str | None, str | None], *, zero_init: bool = False,
          use_bias: bool = True, dtype: Dtype = jnp.float32, name: str | None = None) -> nn.Dense:
  """A Dense layer whose kernel [in, out] carries the logical `names`."""
  kernel_init = nn.initializers.zeros_init() if zero_init else nn.initializers.xavier_uniform()
  return nn.Dense(features, use_bias=use_bias, dtype=dtype, name=name,
                  kernel_init=partitioned(kernel_init, names),
                  bias_init=partitioned(nn.initializers.zeros_init(), (names[1],)))


def conv(features: int, kernel: tuple[int, int, int], *, strides: tuple[int, int, int] = (1, 1, 1),
         init: str = 'default', causal: bool = False, time_padding: str = 'zeros',
         dtype: Dtype = jnp.float32, name: str | None = None) -> 'Conv3D':
  """A conv over (t, h, w) with 'SAME' (or causal-in-time) padding; kernel [t, h, w, in, out].

  init: 'default' (lecun normal), 'zeros', 'identity' (a temporal kernel that passes each
  frame through unchanged, for layers that must start as frame-by-frame identities), or
  'center' (lecun normal on the time tap of the output's own frame, the centre one or the
  last one when `causal`, zeros elsewhere: a full 3x3x3 conv that starts out acting frame by
  frame like a 2D conv). time_padding: 'zeros', or 'replicate' (the edge frames are repeated,
  as CogVideoX's causal VAE does: a still video looks the same to every frame's output).
  """
  if time_padding not in TIME_PADDINGS:
    raise ValueError(f'time_padding={time_padding!r}; use one of {TIME_PADDINGS}.')
  return Conv3D(features, tuple(kernel), tuple(strides), init, causal, time_padding, dtype,
                name=name)


TIME_PADDINGS = ('zeros', 'replicate')


class Conv3D(nn.Module):
  """Conv over (t, h, w) computed as 2D convs: x [B, T, H, W, Cin] -> [B, T', H', W', features].

  XLA:CPU runs 5D convolutions 3-5x slower than the same math as 2D convolutions, so a
  (1, kh, kw) kernel runs on [B*T, H, W, C], a (kt, 1, 1) kernel on [B, T, H*W, C], and a
  full kernel as a sum over its kt time taps. `causal` pads time on the past side only.
  """
  features: int
  kernel: tuple[int, int, int]
  strides: tuple[int, int, int] = (1, 1, 1)
  initializer: str = 'default'  # see `conv`; not `init`, which would shadow Module.init
  causal: bool = False
  time_padding: str = 'zeros'  # or 'replicate'
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    (kt, kh, kw), (st, sh, sw) = self.kernel, self.strides
    own_tap = kt - 1 if self.causal else kt // 2
    inits = {'default': nn.initializers.lecun_normal(), 'zeros': nn.initializers.zeros_init(),
             'identity': identity_time_init,
             'center': functools.partial(time_slice_init, index=own_tap)}
    b, t, h, w, c = x.shape
    kernel = self.param('kernel', partitioned(inits[self.initializer], (None, None, None, 'conv_in', 'conv_out')),
                        (kt, kh, kw, c, self.features)).astype(self.dtype)
    bias = self.param('bias', partitioned(nn.initializers.zeros_init(), ('conv_out',)),
                      (self.features,)).astype(self.dtype)
    x = x.astype(self.dtype)
    t_out = -(-t // st)
    pad_total = max((t_out - 1) * st + kt - t, 0)
    time_pad = (pad_total, 0) if self.causal else (pad_total // 2, pad_total - pad_total // 2)
    if self.time_padding == 'replicate' and pad_total:
      x = jnp.pad(x, ((0, 0), time_pad, (0, 0), (0, 0), (0, 0)), mode='edge')
      t, time_pad = x.shape[1], (0, 0)
    if kt == kh == kw == 1 and st == sh == sw == 1:  # pointwise: a matmul, not a conv
      # Constrained on both sides: without it, XLA (GSPMD and Shardy) computed a wrong kernel
      # gradient for time-sharded inputs (tests/test_train.py compares gradients to 1 device).
      y = jnp.einsum('bthwc,cf->bthwf', constrain(x, VIDEO), kernel[0, 0, 0])
      return constrain(y, VIDEO) + bias
    # Like attention, a conv sees the axes its kernel slides over whole (a temporal conv runs on
    # PIXELS, a spatial one on FRAMES); a context-parallel run regroups by all-to-all. XLA's
    # own halo-exchange partitioning of a conv over a sharded window axis returns gradients
    # scaled by the mesh axes the operand is replicated over (jax 0.10, Shardy and GSPMD).
    if kh == kw == 1 and sh == sw == 1:
      x = constrain(x, PIXELS).reshape(b, t, h * w, c)
      y = conv2d(x, kernel[:, 0], (st, 1), (time_pad, (0, 0)))
      return constrain(y.reshape(b, t_out, h, w, self.features), PIXELS) + bias
    xp = jnp.pad(constrain(x, FRAMES), ((0, 0), time_pad, (0, 0), (0, 0), (0, 0)))
    taps = [xp[:, i:i + st * (t_out - 1) + 1:st] for i in range(kt)]
    y = sum(conv2d(tap.reshape(b * t_out, h, w, c), kernel[i], (sh, sw), 'SAME')
            for i, tap in enumerate(taps))
    return constrain(y.reshape(b, t_out, *y.shape[1:]), FRAMES) + bias


def conv2d(x, kernel, strides, padding):
  """NHWC x HWIO 2D convolution."""
  return jax.lax.conv_general_dilated(x, kernel, strides, padding,
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def identity_time_init(key, shape, dtype=jnp.float32):
  """Kernel [t, 1, 1, c, c] that copies the centre frame: a temporal conv starting as identity."""
  del key
  kt, kh, kw, cin, cout = shape
  kernel = jnp.zeros(shape, dtype)
  return kernel.at[kt // 2, kh // 2, kw // 2].set(jnp.eye(cin, cout, dtype=dtype))


def time_slice_init(key, shape, dtype=jnp.float32, *, index: int):
  """Kernel [t, h, w, in, out] with a 2D lecun-normal kernel on time tap `index` only."""
  kt, kh, kw, cin, cout = shape
  spatial = nn.initializers.lecun_normal()(key, (kh, kw, cin, cout), dtype)
  return jnp.zeros(shape, dtype).at[index].set(spatial)


class GroupNorm(nn.Module):
  """GroupNorm over each frame's (h, w, channel-group): frames are never mixed, so the
  layer acts frame by frame (inflation) and needs no communication across `time` shards.

  x: [B, T, H, W, C] -> same.
  """
  groups: int = 32
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    groups = math.gcd(self.groups, x.shape[-1])
    norm = nn.GroupNorm(num_groups=groups, reduction_axes=(-3, -2, -1), dtype=self.dtype,
                        scale_init=partitioned(nn.initializers.ones_init(), ('norm',)),
                        bias_init=partitioned(nn.initializers.zeros_init(), ('norm',)))
    return norm(x)


def layer_norm(dtype: Dtype = jnp.float32, name: str | None = None) -> nn.LayerNorm:
  return nn.LayerNorm(dtype=dtype, name=name,
                      scale_init=partitioned(nn.initializers.ones_init(), ('norm',)),
                      bias_init=partitioned(nn.initializers.zeros_init(), ('norm',)))


ATTENTION_IMPLS = ('auto', 'xla', 'cudnn')


def check_attention_impl(implementation: str) -> None:
  """A UserError naming the choices unless `implementation` is one of ATTENTION_IMPLS."""
  check(implementation in ATTENTION_IMPLS,
        f'model.attention_impl={implementation!r}; use one of {ATTENTION_IMPLS}.')


def attention_impl(q, mask, window, implementation: str = 'auto') -> str:
  """'xla' or 'cudnn': the kernel `attention` runs for query `q` [B, L, N, D].

  'auto' takes cuDNN's fused flash attention (logits never in memory) where it applies: on
  GPU, bf16/fp16 inputs, head dim a multiple of 8 up to 128, no mask and no two-sided window;
  XLA's einsums (which materialise the [B, N, L, S] logits) otherwise.
  """
  if implementation != 'auto':
    return implementation
  d = q.shape[-1]
  fits = (jax.default_backend() == 'gpu' and q.dtype in (jnp.bfloat16, jnp.float16)
          and d % 8 == 0 and d <= 128 and mask is None and window is None)
  return 'cudnn' if fits else 'xla'


def attention(q, k, v, mask=None, local_window: int | None = None, causal: bool = False,
              implementation: str = 'auto'):
  """Scaled dot-product attention. q: [B, L, N, D], k/v: [B, S, N, D], mask: [B, 1|N, L, S].

  The single place attention is computed. `local_window` lets query i see keys
  i - window .. i + window (self-attention, S == L); `causal` drops the keys after i. A window
  shorter than the sequence runs blockwise (`local_attention`): memory O(L * window).
  `implementation`: one of ATTENTION_IMPLS (see `attention_impl`).
  """
  if local_window is not None and mask is None and q.shape[1] > 3 * max(local_window, 1):
    return local_attention(q, k, v, local_window, causal)
  window = None if local_window is None else (local_window, 0 if causal else local_window)
  impl = attention_impl(q, mask, window, implementation)
  return jax.nn.dot_product_attention(q, k, v, mask=mask, local_window_size=window,
                                      is_causal=causal and window is None, implementation=impl)


def local_attention(q, k, v, window: int, causal: bool = False):
  """Sliding-window self-attention in blocks. q/k/v: [B, L, N, D] -> [B, L, N, D].

  Queries go in blocks of `w = max(window, 1)`; each block sees only its own and the two
  neighbouring blocks of keys (3w), masked to |i - j| <= window (and j <= i when causal), so
  neither the logits nor the gradient touch keys outside the window.
  """
  b, length, n, d = q.shape
  w = max(window, 1)
  blocks = -(-length // w)
  pad = blocks * w - length
  qb = jnp.pad(q, ((0, 0), (0, pad), (0, 0), (0, 0))).reshape(b * blocks, w, n, d)
  kv = [jnp.pad(x, ((0, 0), (w, w + pad), (0, 0), (0, 0))).reshape(b, blocks + 2, w, n, d)
        for x in (k, v)]
  kb, vb = [jnp.concatenate([x[:, :-2], x[:, 1:-1], x[:, 2:]], axis=2).reshape(b * blocks, 3 * w, n, d)
            for x in kv]
  q_pos = jnp.arange(blocks * w).reshape(blocks, w, 1)
  k_pos = (jnp.arange(blocks)[:, None] * w - w + jnp.arange(3 * w)[None, :])[:, None, :]
  allowed = (jnp.abs(k_pos - q_pos) <= window) & (k_pos >= 0) & (k_pos < length)
  if causal:
    allowed &= k_pos <= q_pos
  allowed |= q_pos >= length  # padded queries (cut below) see padding rather than nothing
  mask = jnp.broadcast_to(allowed[None, :, None], (b, blocks, 1, w, 3 * w)).reshape(b * blocks, 1, w, 3 * w)
  out = jax.nn.dot_product_attention(qb, kb, vb, mask=mask)
  return out.reshape(b, blocks * w, n, d)[:, :length]


def rotary(x: jax.Array, positions: jax.Array, max_wavelength: float = 10_000.) -> jax.Array:
  """Rotary position embedding. x: [B, L, N, D], positions: [L] or [L, A] -> x's shape.

  With A axes (2D RoPE over (h, w), 3D over (t, h, w)) the D / 2 frequency pairs are split
  between the axes (as evenly as they go), so attention logits depend on the offset along each.
  """
  positions = positions.astype(jnp.float32).reshape(positions.shape[0], -1)  # [L, A]
  half, axes = x.shape[-1] // 2, positions.shape[1]
  sizes = [half // axes + (a < half % axes) for a in range(axes)]
  angles = jnp.concatenate([positions[:, a, None] * max_wavelength ** (
      -jnp.arange(n, dtype=jnp.float32) / n) for a, n in enumerate(sizes)], axis=1)
  sin, cos = jnp.sin(angles)[None, :, None, :], jnp.cos(angles)[None, :, None, :]
  x1, x2 = x[..., :half].astype(jnp.float32), x[..., half:].astype(jnp.float32)
  return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1).astype(x.dtype)


class MultiHeadAttention(nn.Module):
  """Self- or cross-attention over a token axis. x: [B, L, C], context: [B, S, Cc] -> [B, L, C].

  `rotary_positions` ([L] or [L, axes], self-attention only) rotates q and k; `local_window`
  and `causal` restrict which keys a query sees (see `attention`); `zero_init_out` makes the
  layer start as zero (its residual branch is then an identity); `implementation`: the
  attention kernel (ATTENTION_IMPLS).
  """
  num_heads: int
  head_dim: int = 64
  zero_init_out: bool = False
  dtype: Dtype = jnp.float32
  implementation: str = 'auto'

  @nn.compact
  def __call__(self, x, context=None, mask=None, rotary_positions=None, local_window=None,
               causal=False):
    context = x if context is None else context
    init = nn.initializers.xavier_uniform(in_axis=0, out_axis=(1, 2))
    proj = lambda name, inp: jnp.einsum('bld,dnh->blnh', inp.astype(self.dtype), self.param(
        name, partitioned(init, ('embed', 'heads', 'kv')),
        (inp.shape[-1], self.num_heads, self.head_dim)).astype(self.dtype))
    q, k, v = proj('query', x), proj('key', context), proj('value', context)
    if rotary_positions is not None:
      q, k = rotary(q, rotary_positions), rotary(k, rotary_positions)
    out = attention(q, k, v, mask=mask, local_window=local_window, causal=causal,
                    implementation=self.implementation)
    out_init = (nn.initializers.zeros_init() if self.zero_init_out
                else nn.initializers.xavier_uniform(in_axis=(0, 1), out_axis=2))
    kernel = self.param('out', partitioned(out_init, ('heads', 'kv', 'embed')),
                        (self.num_heads, self.head_dim, x.shape[-1]))
    bias = self.param('out_bias', partitioned(nn.initializers.zeros_init(), ('embed',)), (x.shape[-1],))
    return jnp.einsum('blnh,nhd->bld', out, kernel.astype(self.dtype)) + bias.astype(self.dtype)


class MLP(nn.Module):
  """Transformer feed-forward. x: [..., C] -> [..., C].

  `frame_conv`: a depthwise 3x3 conv over each frame between the two layers (Mix-FFN, as in
  SegFormer / PVTv2), so neighbouring tokens see each other; x must then be [B, T, H, W, C].
  """
  ratio: int = 4
  zero_init_out: bool = False
  dtype: Dtype = jnp.float32
  frame_conv: bool = False

  @nn.compact
  def __call__(self, x):
    width = x.shape[-1]
    h = dense(width * self.ratio, ('embed', 'mlp'), dtype=self.dtype, name='fc1')(x)
    if self.frame_conv:
      h = h + depthwise_frame_conv(self, h)
    h = nn.gelu(h)
    return dense(width, ('mlp', 'embed'), zero_init=self.zero_init_out, dtype=self.dtype,
                 name='fc2')(h)


def depthwise_frame_conv(module: nn.Module, x):
  """A depthwise 3x3 conv over each frame, in `module`'s scope (zero-initialised, so it
  starts as nothing): x [B, T, H, W, C] -> x's shape."""
  h, w = x.shape[2:4]
  kernel = module.param('frame_conv', partitioned(nn.initializers.zeros_init(), (None, None, 'mlp')),
                        (3, 3, x.shape[-1])).astype(x.dtype)
  # Nine shifted products: a grouped conv made the quickstart train step 2.5x slower on CPU.
  padded = jnp.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1), (0, 0)))
  return sum(padded[:, :, i:i + h, j:j + w] * kernel[i, j] for i in range(3) for j in range(3))


def sinusoidal_embedding(t: jax.Array, dim: int, max_period: float = 10_000.) -> jax.Array:
  """Sinusoidal features of scalars. t: [...] (any real scale) -> [..., dim]."""
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
  args = t.astype(jnp.float32)[..., None] * freqs
  return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


def per_frame(cond: jax.Array, frames: int) -> jax.Array:
  """Per-frame conditioning [B, T, D] -> [B, frames, D], averaging groups of T / frames frames
  (for layers after temporal down-sampling or tubelet patching)."""
  b, t, d = cond.shape
  return cond if t == frames else cond.reshape(b, frames, t // frames, d).mean(axis=2)


def attend_prompt(attn: nn.Module, x: jax.Array, context: jax.Array,
                  context_mask: jax.Array) -> jax.Array:
  """Cross-attention of every pixel of every frame to its clip's prompt.

  x: [B, T, H, W, C], context: [B, L, Cc], context_mask: [B, L] -> [B, T, H, W, C]. The clip's
  frames form one query sequence, so the prompt's keys and values are computed once per clip
  (not once per frame) and the tokens stay where `VIDEO` put them: no resharding. (Constraining
  the merged tokens as well made XLA return wrong gradients on data x time x space meshes.)
  """
  b, t, h, w, c = x.shape
  tokens = constrain(x, VIDEO).reshape(b, t * h * w, c)
  out = attn(tokens, context, mask=context_mask[:, None, None, :].astype(bool))
  return constrain(out.reshape(x.shape), VIDEO)


def merge_time(x: jax.Array) -> jax.Array:
  """[B, T, H, W, C] -> [B*T, H*W, C]: tokens of each frame (spatial attention)."""
  b, t, h, w, c = x.shape
  return x.reshape(b * t, h * w, c)


def merge_space(x: jax.Array) -> jax.Array:
  """[B, T, H, W, C] -> [B*H*W, T, C]: each pixel's frames (temporal attention)."""
  b, t, h, w, c = x.shape
  return x.transpose(0, 2, 3, 1, 4).reshape(b * h * w, t, c)


def split_time(x: jax.Array, shape: Sequence[int]) -> jax.Array:
  """Inverse of `merge_time` for a video of `shape` [B, T, H, W, C]."""
  return x.reshape(shape)


def split_space(x: jax.Array, shape: Sequence[int]) -> jax.Array:
  """Inverse of `merge_space` for a video of `shape` [B, T, H, W, C]."""
  b, t, h, w, c = shape
  return x.reshape(b, h, w, t, c).transpose(0, 3, 1, 2, 4)


def space_to_depth(x: jax.Array, patch: Sequence[int]) -> jax.Array:
  """[B, T, H, W, C] -> [B, T/pt, H/ph, W/pw, pt*ph*pw*C] (patches folded into channels)."""
  (pt, ph, pw), (b, t, h, w, c) = patch, x.shape
  x = x.reshape(b, t // pt, pt, h // ph, ph, w // pw, pw, c)
  return x.transpose(0, 1, 3, 5, 2, 4, 6, 7).reshape(b, t // pt, h // ph, w // pw, pt * ph * pw * c)


def depth_to_space(x: jax.Array, patch: Sequence[int]) -> jax.Array:
  """Inverse of `space_to_depth`."""
  (pt, ph, pw), (b, t, h, w, c) = patch, x.shape
  c //= pt * ph * pw
  x = x.reshape(b, t, h, w, pt, ph, pw, c).transpose(0, 1, 4, 2, 5, 3, 6, 7)
  return x.reshape(b, t * pt, h * ph, w * pw, c)
