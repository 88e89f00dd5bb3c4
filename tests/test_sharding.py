"""Mesh construction and sharding inference."""

import jax
import ml_collections
import pytest
from jax.sharding import PartitionSpec as P

from vidiff import sharding
from vidiff.errors import UserError


def mesh_config(**sizes):
  return ml_collections.ConfigDict({**dict(data=1, fsdp=1, time=1, space=1, tensor=1), **sizes})


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
