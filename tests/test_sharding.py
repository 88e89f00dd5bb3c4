"""Mesh construction and sharding inference."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from configs import common
from vidiff import sharding
from vidiff.errors import UserError
from vidiff.models import layers


def mesh_config(dcn=None, **sizes):
  return ml_collections.ConfigDict({**dict(data=1, fsdp=1, time=1, space=1, tensor=1), **sizes,
                                    'dcn': dcn or {}})


def test_fill_axis_takes_the_remaining_devices():
  assert sharding.mesh_shape(mesh_config(data=-1, time=2), 8) == (4, 1, 2, 1, 1)


@pytest.mark.parametrize('sizes,match', [
    (dict(data=3), 'has 3 devices but 8 are available'),
    (dict(data=-1, fsdp=3), 'does not divide'),
    (dict(data=-1, fsdp=-1), 'at most one mesh axis'),
])
def test_bad_meshes_are_user_errors(sizes, match):
  with pytest.raises(UserError, match=match):
    sharding.mesh_shape(mesh_config(**sizes), 8)


@pytest.mark.parametrize('dcn,match', [
    (dict(data=3), 'must be >= 1 and divide mesh.data=8'),
    (dict(data=2), 'spans 2 processes but the job has 1'),
])
def test_bad_dcn_meshes_are_user_errors(dcn, match):
  with pytest.raises(UserError, match=match):
    sharding.make_mesh(mesh_config(data=8, dcn=dcn))


def test_make_mesh_names_axes():
  mesh = sharding.make_mesh(mesh_config(data=2, fsdp=2, time=2))
  assert mesh.axis_names == sharding.MESH_AXES and mesh.devices.size == 8


def test_indivisible_dims_are_replicated():
  mesh = sharding.make_mesh(mesh_config(fsdp=4, tensor=2))
  assert sharding.spec_for_shape(P('fsdp', 'tensor'), (3, 8), mesh) == P(None, 'tensor')
  assert sharding.spec_for_shape(P(('fsdp', 'tensor'), None), (4, 5), mesh) == P('fsdp', None)
  assert sharding.spec_for_shape(P(('fsdp', 'tensor')), (16, 5), mesh) == P(('fsdp', 'tensor'), None)


def test_batch_not_divisible_by_mesh_names_the_field():
  mesh = sharding.make_mesh(mesh_config(data=4, time=2))
  rules = (('act_batch', ('data', 'fsdp')), ('act_time', 'time'), ('act_height', 'space'),
           ('act_width', None))
  shardings = sharding.batch_shardings(mesh, rules)
  with pytest.raises(UserError, match='train.batch_size'):
    sharding.check_batch_divisible({'video': (6, 4, 8, 8, 3), 'tokens': (6, 4)}, shardings)
  with pytest.raises(UserError, match='data.num_frames'):
    sharding.check_batch_divisible({'video': (8, 3, 8, 8, 3), 'tokens': (8, 4)}, shardings)
  sharding.check_batch_divisible({'video': (8, 4, 8, 8, 3), 'tokens': (8, 4)}, shardings)


def test_sub_mesh_on_one_device():
  mesh = sharding.make_mesh(mesh_config(), devices=jax.devices()[:1])
  assert mesh.devices.size == 1


@pytest.mark.parametrize('sizes', [dict(data=2, time=2, space=2), dict(data=2, space=2, tensor=2),
                                   dict(time=2, space=4)])
@pytest.mark.parametrize('kernel,strides', [((1, 3, 3), (1, 1, 1)), ((3, 1, 1), (1, 1, 1)),
                                            ((3, 3, 3), (1, 2, 2))])
def test_conv_gradients_do_not_depend_on_the_mesh(sizes, kernel, strides):
  # Regression: XLA partitions a conv over a sharded window axis by halo exchange and then
  # returned gradients scaled by the mesh axes the input was replicated over (2x, 4x).
  conv = layers.conv(8, kernel, strides=strides)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 4, 8, 8, 8))
  params = nn.unbox(conv.init(jax.random.PRNGKey(1), x)['params'])
  loss = lambda p, x: jnp.mean(jnp.sin(conv.apply({'params': p}, x)) ** 2)
  expected = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, x)
  mesh = sharding.make_mesh(mesh_config(**sizes))
  video = jax.sharding.NamedSharding(mesh, P('data', 'time', 'space', None, 'tensor'))
  params = jax.device_put(params, jax.sharding.NamedSharding(mesh, P()))
  with jax.set_mesh(mesh), nn.logical_axis_rules(common.RULES):
    got = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, jax.device_put(x, video))
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
