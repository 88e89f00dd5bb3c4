"""Model shapes, frame-by-frame initialisation, and clear errors for shapes a model cannot take."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vidiff import models
from vidiff.errors import UserError
from vidiff.models import layers, text


def _init_apply(model_config, shape, seed=0):
  model = models.get_model(model_config)
  x = jax.random.normal(jax.random.PRNGKey(seed), shape)
  t = jnp.full((shape[0],), 0.5)
  tokens = jnp.asarray(text.tokenize(['a red circle moving left'] * shape[0], 16, 4096))
  params = model.init(jax.random.PRNGKey(1), x, t, tokens)
  return model, params, x, t, tokens


@pytest.mark.parametrize('conv', ['2plus1d', '3d'])
@pytest.mark.parametrize('shape', [(2, 1, 8, 8, 3), (1, 4, 16, 8, 3), (2, 6, 8, 16, 3)])
def test_unet_output_shape_equals_input(tiny_config, conv, shape):
  tiny_config.model.conv = conv
  model, params, x, t, tokens = _init_apply(tiny_config.model, shape)
  out = model.apply(params, x, t, tokens)
  assert out.shape == shape and out.dtype == jnp.float32


def test_unet_with_patch_stem_and_time_downsampling(tiny_config):
  tiny_config.model.patch_size = (1, 2, 2)
  tiny_config.model.temporal_downsample = (True, False)
  model, params, x, t, tokens = _init_apply(tiny_config.model, (1, 4, 16, 16, 3))
  assert model.apply(params, x, t, tokens).shape == (1, 4, 16, 16, 3)


def test_fresh_unet_acts_frame_by_frame(tiny_config):
  """Identity temporal convs + zero temporal attention: frame k's output ignores other frames."""
  tiny_config.model.conv = '2plus1d'
  model, params, x, t, tokens = _init_apply(tiny_config.model, (1, 4, 8, 8, 3))
  out = model.apply(params, x, t, tokens)
  single = model.apply(params, x[:, 2:3], t, tokens)
  np.testing.assert_allclose(out[:, 2:3], single, atol=1e-5)
  assert float(jnp.abs(out).max()) > 0


def test_temporal_attention_is_trained_to_mix_frames(tiny_config):
  """Once the temporal attention output is non-zero, frames influence each other."""
  model, params, x, t, tokens = _init_apply(tiny_config.model, (1, 4, 8, 8, 3))
  params = jax.tree_util.tree_map_with_path(lambda p, v: v + 0.05, params)
  out = model.apply(params, x, t, tokens)
  single = model.apply(params, x[:, 2:3], t, tokens)
  assert float(jnp.abs(out[:, 2:3] - single).max()) > 1e-3


@pytest.mark.parametrize('field,value', [('num_frames', 3), ('resolution', 10)])
def test_shapes_the_model_cannot_take_name_valid_values(tiny_config, field, value):
  tiny_config.model.temporal_downsample = (True, False)
  tiny_config.model.patch_size = (1, 2, 2)
  time_factor, space_factor = models.backbone(tiny_config.model).factors()
  levels = len(tiny_config.model.channels) - 1
  assert (time_factor, space_factor) == (2, 2 * 2 ** levels)
  fix = {'num_frames': time_factor, 'resolution': space_factor}[field]
  kwargs = {'num_frames': 4, 'resolution': 16, field: value}
  with pytest.raises(UserError, match=f'data.{field}={value}.*multiples of {fix}; valid'):
    models.check_video_shape(tiny_config.model, **kwargs)
  models.check_video_shape(tiny_config.model, **{**kwargs, field: 2 * fix})


def test_unknown_backbone_is_a_user_error(tiny_config):
  tiny_config.model.name = 'resnet'
  with pytest.raises(UserError, match='model.name'):
    models.get_model(tiny_config.model)


def test_params_carry_logical_axis_names(tiny_config):
  model = models.get_model(tiny_config.model)
  boxed = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 2, 8, 8, 3)),
                         jnp.zeros((1,)), jnp.zeros((1, 16), jnp.int32))
  leaves = jax.tree.leaves(boxed, is_leaf=lambda x: hasattr(x, 'names'))
  assert leaves and all(hasattr(leaf, 'names') for leaf in leaves)
  names = {n for leaf in leaves for n in leaf.names if n}
  assert {'embed', 'conv_in', 'conv_out', 'heads', 'kv', 'mlp', 'vocab'} <= names


def test_conv3d_matches_lax_conv():
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 5, 8, 8, 4))
  for kernel, strides in [((3, 3, 3), (1, 1, 1)), ((1, 3, 3), (1, 2, 2)), ((3, 1, 1), (2, 1, 1)),
                          ((3, 3, 3), (2, 2, 2))]:
    conv = layers.conv(6, kernel, strides=strides)
    params = conv.init(jax.random.PRNGKey(1), x)
    ref = jax.lax.conv_general_dilated(x, params['params']['kernel'].value, strides, 'SAME',
                                       dimension_numbers=('NTHWC', 'THWIO', 'NTHWC'))
    np.testing.assert_allclose(conv.apply(params, x), ref, atol=1e-5, err_msg=str(kernel))


def test_depthwise_frame_conv_matches_grouped_lax_conv():
  """The MLP's depthwise conv (nine shifted products) equals a grouped 3x3 conv per frame."""
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 3, 8, 6, 5))
  kernel = jax.random.normal(jax.random.PRNGKey(1), (3, 3, 5))

  class Conv(nn.Module):
    @nn.compact
    def __call__(self, x):
      return layers.depthwise_frame_conv(self, x)

  out = Conv().apply({'params': {'frame_conv': kernel}}, x)
  ref = jax.lax.conv_general_dilated(x.reshape(6, 8, 6, 5), kernel[:, :, None], (1, 1), 'SAME',
                                     dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
                                     feature_group_count=5)
  np.testing.assert_allclose(out, ref.reshape(x.shape), atol=1e-5)


def test_causal_conv_ignores_the_future():
  x = jax.random.normal(jax.random.PRNGKey(0), (1, 6, 4, 4, 2))
  conv = layers.conv(3, (3, 3, 3), causal=True)
  params = conv.init(jax.random.PRNGKey(1), x)
  changed = x.at[:, 4:].set(0.)
  np.testing.assert_allclose(conv.apply(params, x)[:, :4], conv.apply(params, changed)[:, :4])


def test_space_to_depth_round_trip():
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 4, 8, 6, 3))
  folded = layers.space_to_depth(x, (2, 2, 3))
  assert folded.shape == (2, 2, 4, 2, 36)
  np.testing.assert_array_equal(layers.depth_to_space(folded, (2, 2, 3)), x)


def test_tokenizer_is_deterministic_and_pads():
  tokens = text.tokenize(['A red circle, moving LEFT', ''], 8, 4096)
  assert tokens.shape == (2, 8)
  np.testing.assert_array_equal(tokens[0], text.tokenize(['a red circle moving left'], 8, 4096)[0])
  assert list(tokens[1]) == [text.BOS] + [text.PAD] * 7
  assert (tokens[0, 1:6] >= 2).all() and (tokens[0, 6:] == text.PAD).all()


@pytest.mark.parametrize('backbone', ['unet3d', 'st_transformer'])
def test_per_frame_times_condition_each_frame(backbone):
  """t [B] equals the same t on every frame [B, T]; another time on frame 0 changes frame 0."""
  from configs import common  # pylint: disable=import-outside-toplevel
  model_config = common.model_config(backbone, 'tiny')
  model, params, x, t, tokens = _init_apply(model_config, (2, 4, 8, 8, 3))
  params = jax.tree.map(lambda p: p + 0.01, params)  # wake the zero-initialised layers
  out = model.apply(params, x, t, tokens)
  per_frame = jnp.broadcast_to(t[:, None], (2, 4))
  np.testing.assert_allclose(model.apply(params, x, per_frame, tokens), out, atol=1e-5)
  changed = model.apply(params, x, per_frame.at[:, 0].set(0.), tokens)
  assert float(jnp.abs(changed[:, 0] - out[:, 0]).max()) > 1e-3
