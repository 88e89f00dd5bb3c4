"""Both backbones: shapes, sharded == single-device, remat, inflation, windowed attention, sizes."""

import re

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import common, quickstart
from vidiff import model_info, models, train
from vidiff.errors import UserError
from vidiff.models import layers, text, unet3d

BACKBONES = ['unet3d', 'st_transformer']


def _inputs(shape, seed=0):
  x = jax.random.normal(jax.random.PRNGKey(seed), shape)
  t = jnp.linspace(0.2, 0.8, shape[0])
  tokens = jnp.asarray(text.tokenize(['a red circle moving left'] * shape[0], 16, 4096))
  return x, t, tokens


def _perturbed(params, scale=0.05, seed=3):
  """Params with every leaf moved off its init: zero-init gates and outputs become active."""
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
  return jax.tree.unflatten(tree, [v + scale * jax.random.normal(k, v.shape) for v, k in zip(leaves, keys)])


def _init(config, shape):
  model = models.get_model(config.model)
  x, t, tokens = _inputs(shape)
  params = flax.core.unfreeze(nn.meta.unbox(model.init(jax.random.PRNGKey(1), x, t, tokens)))
  return model, _perturbed(params), (x, t, tokens)


@pytest.mark.parametrize('attention', ['factorized', 'alternating', 'joint'])
@pytest.mark.parametrize('shape', [(2, 1, 8, 8, 3), (1, 4, 16, 8, 3), (2, 6, 8, 16, 3)])
def test_st_transformer_output_shape_equals_input(attention, shape):
  config = quickstart.get_config('st_transformer,tiny')
  config.model.attention = attention
  model, params, args = _init(config, shape)
  out = model.apply(params, *args)
  assert out.shape == shape and out.dtype == jnp.float32
  assert float(jnp.abs(out).max()) > 0


def test_rotary_logits_depend_only_on_offsets():
  """1D, 2D (h, w) and 3D (t, h, w) rotary positions: q.k is unchanged when every position
  moves by the same offset, and changes when one token moves alone."""
  q, k = jax.random.normal(jax.random.PRNGKey(0), (2, 1, 12, 2, 16))
  logits = lambda p: jnp.einsum('blnd,bsnd->bnls', layers.rotary(q, p), layers.rotary(k, p))
  for axes in (1, 2, 3):
    pos = jax.random.randint(jax.random.PRNGKey(axes), (12, axes), 0, 8)
    ref = logits(pos)
    np.testing.assert_allclose(logits(pos + jnp.arange(3, 3 + axes)), ref, atol=1e-4)
    assert float(jnp.abs(logits(pos.at[0].add(1)) - ref).max()) > 1e-2
  np.testing.assert_array_equal(logits(pos[:, 0]), logits(pos[:, :1]))


@pytest.mark.parametrize('shape', [(1, 1, 8, 8, 3), (2, 4, 16, 8, 3)])
def test_space_rope_and_mlp_conv_start_at_zero_and_train(shape):
  """2D rotary positions in the spatial attention and a depthwise conv in each MLP: the fresh
  model still outputs 0; once the adaLN gates open, the zero-initialised conv kernels get a
  gradient; and trained, both options change the output."""
  config = quickstart.get_config('st_transformer,tiny')
  config.model.update(space_rope=True, mlp_conv=True)
  model = models.get_model(config.model)
  x, t, tokens = _inputs(shape)
  params = nn.meta.unbox(model.init(jax.random.PRNGKey(1), x, t, tokens))
  np.testing.assert_array_equal(model.apply(params, x, t, tokens), 0.)
  params = _perturbed(params)
  zero_conv = flax.core.unfreeze(params)
  mlp = zero_conv['params']['backbone']['block_0']['mlp']
  mlp['frame_conv'] = jnp.zeros_like(mlp['frame_conv'])
  grads = jax.grad(lambda p: jnp.sum(model.apply(p, x, t, tokens) * x))(zero_conv)
  assert float(jnp.abs(grads['params']['backbone']['block_0']['mlp']['frame_conv']).max()) > 0
  out = model.apply(params, x, t, tokens)
  for option in ('space_rope', 'mlp_conv'):
    plain = models.get_model(_without(config.model, option))
    assert float(jnp.abs(plain.apply(params, x, t, tokens) - out).max()) > 1e-3, option


def test_checkpoints_saved_before_space_rope_rebuild_without_it():
  """A saved model config that predates `space_rope` builds the model it trained (no rotary
  positions); new configs turn them on."""
  saved = quickstart.get_config('st_transformer').to_dict()
  del saved['model']['space_rope'], saved['model']['mlp_conv']
  assert not models.backbone(common.from_saved(saved).model).space_rope
  assert models.backbone(quickstart.get_config('st_transformer').model).space_rope


def _without(model_config, option):
  config = model_config.copy_and_resolve_references()
  config[option] = False
  return config


def test_fresh_st_transformer_predicts_zero():
  """adaLN-Zero: every block and the output layer start as zero, so the model outputs 0."""
  config = quickstart.get_config('st_transformer,tiny')
  model = models.get_model(config.model)
  x, t, tokens = _inputs((1, 4, 8, 8, 3))
  params = model.init(jax.random.PRNGKey(1), x, t, tokens)
  np.testing.assert_array_equal(model.apply(params, x, t, tokens), 0.)


@pytest.mark.parametrize('shape', [(1, 1, 8, 8, 3), (2, 4, 16, 8, 3)])
def test_overlapping_patches_start_at_zero_and_train_every_layer(shape):
  """pixel_conv: 3x3 convs on the pixels around the patch embedding and unpatchify. The model
  still starts at 0 (the output conv is zero), and its first gradient reaches the output conv
  (the unpatchify under it is not zero, or neither layer could ever learn)."""
  config = quickstart.get_config('st_transformer,tiny')
  config.model.pixel_conv = 8
  model = models.get_model(config.model)
  x, t, tokens = _inputs(shape)
  params = nn.meta.unbox(model.init(jax.random.PRNGKey(1), x, t, tokens))
  np.testing.assert_array_equal(model.apply(params, x, t, tokens), 0.)
  grads = jax.grad(lambda p: jnp.sum(model.apply(p, x, t, tokens) * x))(params)
  backbone = grads['params']['backbone']
  assert {'pixel_conv_in', 'unpatchify', 'pixel_conv_out'} <= set(backbone)
  assert float(jnp.abs(backbone['pixel_conv_out']['kernel']).max()) > 0
  config.model.pixel_conv = -1
  with pytest.raises(UserError, match='model.pixel_conv=-1 must be >= 0'):
    models.get_model(config.model).init(jax.random.PRNGKey(1), x, t, tokens)


@pytest.mark.parametrize('frame_embedding', [False, True])
def test_frame_embedding_tells_identical_frames_apart(frame_embedding):
  """Without it the ST-Transformer is shift-invariant in time: identical frames in, identical
  frames out, so from pure noise it could not draw frame k differently from frame 0."""
  config = quickstart.get_config('st_transformer,tiny')
  config.model.frame_embedding = frame_embedding
  model, params, (x, t, tokens) = _init(config, (1, 4, 8, 8, 3))
  out = model.apply(params, jnp.repeat(x[:, :1], 4, axis=1), t, tokens)
  spread = float(jnp.abs(out - out[:, :1]).max())
  assert (spread > 1e-3) if frame_embedding else (spread < 1e-5), spread


@pytest.mark.parametrize('conv', ['2plus1d', '3d'])
@pytest.mark.parametrize('time_padding', ['zeros', 'replicate'])
def test_unet_replicate_padding_does_not_mark_the_clip_edges(conv, time_padding):
  """Zero padding in time shows the temporal convs where the clip ends, so a still video
  comes out with different edge frames; replicated edge frames do not."""
  config = quickstart.get_config('unet3d,tiny')
  config.model.update(frame_embedding=False, conv=conv, time_padding=time_padding)
  model, params, (x, t, tokens) = _init(config, (1, 4, 8, 8, 3))
  out = model.apply(params, jnp.repeat(x[:, :1], 4, axis=1), t, tokens)
  spread = float(jnp.abs(out - out[:, :1]).max())
  assert (spread < 1e-5) if time_padding == 'replicate' else (spread > 1e-3), spread


def test_unet_rejects_unknown_time_padding():
  config = quickstart.get_config('unet3d,tiny')
  config.model.time_padding = 'reflect'
  with pytest.raises(UserError, match="time_padding='reflect'"):
    _init(config, (1, 4, 8, 8, 3))


@pytest.mark.parametrize('backbone', BACKBONES)
def test_unknown_attention_impl_is_a_user_error(backbone):
  config = quickstart.get_config(f'{backbone},tiny')
  config.model.attention_impl = 'flash'
  with pytest.raises(UserError, match="attention_impl='flash'.*'auto', 'xla', 'cudnn'"):
    _init(config, (1, 4, 8, 8, 3))


def test_auto_attention_takes_cudnn_only_where_it_applies():
  """cuDNN's fused kernel on GPU for bf16/fp16, head dims multiple of 8 up to 128, no mask or
  two-sided window; XLA otherwise (and everywhere on CPU)."""
  bf16 = jnp.zeros((1, 4, 2, 64), jnp.bfloat16)
  on_gpu = jax.default_backend() == 'gpu'
  assert layers.attention_impl(bf16, None, None) == ('cudnn' if on_gpu else 'xla')
  for q, mask, window in ((bf16.astype(jnp.float32), None, None),
                          (jnp.zeros((1, 4, 2, 12), jnp.bfloat16), None, None),
                          (jnp.zeros((1, 4, 2, 256), jnp.bfloat16), None, None),
                          (bf16, jnp.ones((1, 1, 4, 4), bool), None), (bf16, None, (2, 2))):
    assert layers.attention_impl(q, mask, window) == 'xla'
  assert layers.attention_impl(bf16.astype(jnp.float32), None, None, 'cudnn') == 'cudnn'


def _forward_and_grads(setup, params, args):
  """Model output and d(sum out^2)/d params, jitted on the setup's mesh."""
  shardings = (setup.state_shardings.params, setup.batch_shardings['video'], None,
               setup.batch_shardings['tokens'])
  apply = lambda p, x, t, tok: setup.model.apply({'params': p}, x, t, tok)
  fn = jax.jit(lambda p, x, t, tok: (apply(p, x, t, tok),
                                     jax.grad(lambda q: jnp.sum(apply(q, x, t, tok) ** 2))(p)),
               in_shardings=shardings)
  with setup.context():
    return jax.device_get(fn(params, *args))


def test_time_sharded_attention_reshards_by_all_to_all():
  """Context parallelism: frames split over `time` regroup for spatial and temporal attention
  with all-to-all (Ulysses / DSP style), not by gathering whole activations."""
  config = quickstart.get_config('st_transformer,tiny')
  config.mesh.update(data=4, time=2)
  hlo = train.compile_train_step(train.make_setup(config)).as_text()
  assert len(re.findall(r' all-to-all(?:-start)?\(', hlo)) >= 2 * config.model.depth


@pytest.mark.parametrize('backbone,options', [
    ('unet3d', {}), ('st_transformer', dict(space_rope=False, mlp_conv=False)),
    ('st_transformer', dict(space_rope=True, mlp_conv=True))])
def test_sharded_forward_equals_single_device(backbone, options):
  """data=2 x time=2 x space=2: frames and rows split, attention re-shards between them (and
  the MLP's depthwise conv reads rows across the `space` split)."""
  config = quickstart.get_config(f'{backbone},tiny')
  config.model.update(options)
  config.data.update(num_frames=4, resolution=16)
  config.mesh.update(data=2, fsdp=1, time=2, space=2, tensor=1)
  sharded = train.make_setup(config)
  model, params, args = _init(config, (2, 4, 16, 16, 3))
  params = params['params']
  out, grads = _forward_and_grads(sharded, params, args)
  config.mesh.update(data=1, time=1, space=1)
  single = train.make_setup(config, jax.devices()[:1])
  ref_out, ref_grads = _forward_and_grads(single, params, args)
  np.testing.assert_allclose(out, ref_out, rtol=1e-4, atol=1e-5)
  for (path, g), r in zip(jax.tree_util.tree_leaves_with_path(grads), jax.tree.leaves(ref_grads)):
    # float32 sums in another order: absolute error scales with the tensor's largest entries
    # (grads here reach ~200), so near-zero entries get an atol relative to that scale.
    atol = 1e-4 + 1e-5 * float(np.abs(r).max())
    np.testing.assert_allclose(g, r, rtol=1e-3, atol=atol, err_msg=jax.tree_util.keystr(path))


@pytest.mark.parametrize('backbone,policy', [('unet3d', 'dots'), ('st_transformer', 'full'),
                                             ('st_transformer', 'dots_no_batch')])
def test_remat_gives_the_same_gradients(backbone, policy):
  config = quickstart.get_config(f'{backbone},tiny')
  shape = (1, 4, 8, 8, 3)
  grads = {}
  for remat in ('none', policy):
    config.model.remat_policy = remat
    model, params, args = _init(config, shape)
    grads[remat] = jax.jit(jax.grad(lambda p: jnp.sum(model.apply(p, *args) ** 2)))(params)
  # Recomputation may reorder float sums: equal up to float noise on each array's scale.
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * np.abs(b).max()),
               grads['none'], grads[policy])


def test_unknown_remat_policy_is_a_user_error():
  config = quickstart.get_config('st_transformer,tiny')
  config.model.remat_policy = 'some'
  with pytest.raises(UserError, match='remat_policy'):
    _init(config, (1, 2, 8, 8, 3))


@pytest.mark.parametrize('conv', ['2plus1d', '3d'])
@pytest.mark.parametrize('frames', [1, 3])
def test_inflated_unet_equals_image_unet_on_every_frame(conv, frames):
  config = quickstart.get_config('unet3d,tiny')
  config.model.conv = conv
  x, t, tokens = _inputs((2, frames, 8, 8, 3))
  image_config = config.model.copy_and_resolve_references()
  image_config.update(temporal=False, frame_embedding=False)
  image_model = models.get_model(image_config)
  image_params = _perturbed(nn.meta.unbox(image_model.init(jax.random.PRNGKey(1), x[:, :1], t, tokens)))
  video_model = models.get_model(config.model)
  video_params = video_model.init(jax.random.PRNGKey(2), x, t, tokens)
  params = nn.meta.unbox(unet3d.inflate_from_image_params(image_params, video_params))
  video_out = video_model.apply(params, x, t, tokens)
  for k in range(frames):
    np.testing.assert_allclose(video_out[:, k:k + 1],
                               image_model.apply(image_params, x[:, k:k + 1], t, tokens),
                               rtol=1e-4, atol=1e-5)


def _windowed_reference(q, k, v, window, causal):
  length = q.shape[1]
  i, j = jnp.arange(length)[:, None], jnp.arange(length)[None, :]
  allowed = (jnp.abs(i - j) <= window) & ((j <= i) if causal else True)
  return jax.nn.dot_product_attention(q, k, v, mask=allowed[None, None])


@pytest.mark.parametrize('length,window,causal', [(17, 3, False), (16, 4, True), (9, 1, False),
                                                  (12, 0, False)])
def test_local_attention_equals_masked_full_attention(length, window, causal):
  q, k, v = jax.random.normal(jax.random.PRNGKey(0), (3, 2, length, 2, 8))
  np.testing.assert_allclose(layers.local_attention(q, k, v, window, causal),
                             _windowed_reference(q, k, v, window, causal), rtol=1e-5, atol=1e-6)


def test_window_covering_all_frames_equals_full_attention():
  q, k, v = jax.random.normal(jax.random.PRNGKey(0), (3, 2, 8, 2, 8))
  np.testing.assert_allclose(layers.attention(q, k, v, local_window=8),
                             jax.nn.dot_product_attention(q, k, v), rtol=1e-5, atol=1e-6)


def test_local_attention_never_reads_outside_its_window():
  length, window, query = 20, 3, 9
  q, k, v = jax.random.normal(jax.random.PRNGKey(0), (3, 1, length, 1, 4))
  grad_k, grad_v = jax.grad(lambda k, v: jnp.sum(layers.local_attention(q, k, v, window)[:, query]),
                            argnums=(0, 1))(k, v)
  touched = np.flatnonzero(np.abs(np.asarray(grad_k) + np.asarray(grad_v)).sum(axis=(0, 2, 3)))
  np.testing.assert_array_equal(touched, np.arange(query - window, query + window + 1))


def test_temporal_window_in_a_model_limits_what_frames_see():
  config = quickstart.get_config('st_transformer,tiny')
  config.model.update(temporal_window=1, depth=1, patch_size=(1, 4, 4))
  model, params, (x, t, tokens) = _init(config, (1, 8, 8, 8, 3))
  grad = jax.grad(lambda x: jnp.sum(model.apply(params, x, t, tokens)[:, 0]))(x)
  seen = np.flatnonzero(np.abs(np.asarray(grad)).sum(axis=(0, 2, 3, 4)))
  np.testing.assert_array_equal(seen, [0, 1])


@pytest.mark.parametrize('field,value,valid', [('num_frames', 3, '2, 4, 6'),
                                               ('resolution', 12, '8, 16, 24')])
def test_st_transformer_shapes_not_divisible_by_the_patch_name_valid_values(field, value, valid):
  config = quickstart.get_config('st_transformer,tiny')
  config.model.patch_size = (2, 8, 8)
  kwargs = {'num_frames': 4, 'resolution': 16, field: value}
  with pytest.raises(UserError, match=f'data.{field}={value}.*valid values include {valid}'):
    models.check_video_shape(config.model, **kwargs)


@pytest.mark.parametrize('backbone', BACKBONES)
def test_preset_sizes(backbone):
  """base is ~100-300M params and large 1B+ (shapes only: nothing is allocated)."""
  counts = {}
  for size in ('base', 'large'):
    config = quickstart.get_config(f'{backbone},{size}')
    config.data.update(num_frames=8, resolution=64)
    counts[size] = model_info.param_counts(config)['total']
  assert 100e6 <= counts['base'] <= 300e6 and counts['large'] >= 1e9, counts
