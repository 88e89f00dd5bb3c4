"""Mesh construction, logical-axis rules, and shardings for the train state and batches.

Parameters carry logical axis names (`embed`, `mlp`, `heads`, `kv`, `conv_in`, `conv_out`,
`vocab`), activations are constrained with `act_*` names, and one rules table in the config
(`config.mesh.rules`) maps both to the mesh axes `data`, `fsdp`, `time`, `space`, `tensor`.
Changing the parallelism of a run is therefore a config change, never a code change.
"""

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from vidiff.errors import UserError, check

MESH_AXES = ('data', 'fsdp', 'time', 'space', 'tensor')
BATCH_AXES = ('data', 'fsdp')

# Logical names of the arrays that enter the train step.
VIDEO_AXES = ('act_batch', 'act_time', 'act_height', 'act_width', None)
TOKENS_AXES = ('act_batch', None)


def mesh_shape(mesh_config, num_devices: int) -> tuple[int, ...]:
  """Returns the mesh sizes in `MESH_AXES` order, filling one `-1` entry."""
  sizes = [int(mesh_config[name]) for name in MESH_AXES]
  fills = [i for i, s in enumerate(sizes) if s == -1]
  check(len(fills) <= 1, f'at most one mesh axis may be -1 (fill), got {_describe(sizes)}.')
  check(all(s >= 1 or s == -1 for s in sizes),
        f'mesh sizes must be positive or -1, got {_describe(sizes)}.')
  fixed = math.prod(s for s in sizes if s != -1)
  if fills:
    check(num_devices % fixed == 0,
          f'the fixed mesh axes {_describe(sizes)} multiply to {fixed}, which does not divide '
          f'the {num_devices} devices; choose sizes whose product divides {num_devices}.')
    sizes[fills[0]] = num_devices // fixed
  check(math.prod(sizes) == num_devices,
        f'the mesh {_describe(sizes)} has {math.prod(sizes)} devices but {num_devices} are '
        f'available; make the product of --config.mesh.* equal {num_devices} '
        f'(or set one axis to -1 to fill).')
  return tuple(sizes)


def _describe(sizes: Sequence[int]) -> str:
  return ' x '.join(f'{n}={s}' for n, s in zip(MESH_AXES, sizes))


def make_mesh(mesh_config, devices: Sequence[jax.Device] | None = None) -> Mesh:
  """Builds the 5-axis device mesh described by `config.mesh` over `devices` (default: all).

  `mesh.dcn` says how many ways each axis goes across slices (TPU multi-slice) or processes
  (GPU nodes): those parts are laid over the slow network (DCN) and the rest within a slice or
  node (ICI / NVLink), with `mesh_utils.create_hybrid_device_mesh`.
  """
  devices = list(jax.devices() if devices is None else devices)
  shape = mesh_shape(mesh_config, len(devices))
  dcn = dcn_shape(mesh_config, shape)
  auto = (jax.sharding.AxisType.Auto,) * len(MESH_AXES)
  if math.prod(dcn) > 1:
    ici = tuple(s // d for s, d in zip(shape, dcn))
    multislice = len({getattr(d, 'slice_index', 0) for d in devices}) > 1
    granules = len({getattr(d, 'slice_index', 0) if multislice else d.process_index
                    for d in devices})
    check(granules == math.prod(dcn),
          f'--config.mesh.dcn {_describe(dcn)} spans {math.prod(dcn)} '
          f'{"slices" if multislice else "processes"} but the job has {granules}; make the '
          f'product of mesh.dcn.* equal {granules}.')
    grid = mesh_utils.create_hybrid_device_mesh(ici, dcn, devices,
                                                process_is_granule=not multislice)
    return Mesh(grid, MESH_AXES, axis_types=auto)
  if len(devices) == jax.device_count():
    return jax.make_mesh(shape, MESH_AXES, axis_types=auto, devices=devices)
  return Mesh(np.asarray(devices).reshape(shape), MESH_AXES, axis_types=auto)


def dcn_shape(mesh_config, shape: Sequence[int]) -> tuple[int, ...]:
  """The DCN part of each axis in `MESH_AXES` order (all 1 without `mesh.dcn`)."""
  dcn_config = mesh_config.get('dcn') or {}
  dcn = tuple(int(dcn_config.get(name, 1)) for name in MESH_AXES)
  for name, size, ways in zip(MESH_AXES, shape, dcn):
    check(ways >= 1 and size % ways == 0,
          f'mesh.dcn.{name}={ways} must be >= 1 and divide mesh.{name}={size} (the axis\'s total '
          f'size: mesh.dcn.{name} of it across slices/processes, the rest within one).')
  return dcn


def rules(mesh_config) -> tuple[tuple[str, str | tuple[str, ...] | None], ...]:
  """Returns the logical-axis rules table of the config as hashable tuples."""
  return tuple((name, tuple(axes) if isinstance(axes, list) else axes)
               for name, axes in mesh_config.rules)


def spec_for_shape(spec: PartitionSpec, shape: Sequence[int], mesh: Mesh) -> PartitionSpec:
  """Drops mesh axes from `spec` on dims they do not divide, so any shape can be placed.

  A 3-channel input conv cannot be split 2 ways; it is replicated on that dim instead.
  """
  fixed = []
  for dim, axes in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
    names = (axes,) if isinstance(axes, str) else tuple(axes or ())
    kept, size = [], 1
    for name in names:
      if dim % (size * mesh.shape[name]) == 0:
        kept.append(name)
        size *= mesh.shape[name]
    fixed.append(None if not kept else kept[0] if len(kept) == 1 else tuple(kept))
  return PartitionSpec(*fixed)


def tree_shardings(boxed_abstract_tree, mesh: Mesh, axis_rules):
  """Returns NamedShardings for a tree of (possibly logically boxed) ShapeDtypeStructs.

  The output tree has the structure of the unboxed tree; unannotated leaves are replicated.
  Array-less leaves (optax's MaskedNode for frozen parameters) stay as they are.
  """
  logical = nn.get_partition_spec(boxed_abstract_tree)
  mesh_specs = nn.logical_to_mesh(logical, axis_rules)
  shapes = nn.meta.unbox(boxed_abstract_tree)
  shard = lambda spec, leaf: (NamedSharding(mesh, spec_for_shape(spec, leaf.shape, mesh))
                              if hasattr(leaf, 'shape') else leaf)
  return jax.tree.map(shard, mesh_specs, shapes, is_leaf=lambda x: isinstance(x, PartitionSpec))


def logical_sharding(names: Sequence[str | None], mesh: Mesh, axis_rules) -> NamedSharding:
  """Returns the NamedSharding of an array whose dims carry the logical `names`."""
  return NamedSharding(mesh, nn.logical_to_mesh_axes(names, axis_rules))


def batch_shardings(mesh: Mesh, axis_rules, depth: bool = False) -> dict[str, NamedSharding]:
  """Shardings of the train batch: `video` [B, T, H, W, C] and `tokens` [B, L] (and with
  `depth`, `depth` [B, T, H, W], split like the video)."""
  out = {'video': logical_sharding(VIDEO_AXES, mesh, axis_rules),
         'tokens': logical_sharding(TOKENS_AXES, mesh, axis_rules)}
  if depth:
    out['depth'] = logical_sharding(VIDEO_AXES[:4], mesh, axis_rules)
  return out


def split_axes(sharding: NamedSharding, dim: int) -> tuple[str, ...]:
  """The mesh axes that split dimension `dim` of arrays with this sharding."""
  axes = sharding.spec[dim] if dim < len(sharding.spec) else None
  return (axes,) if isinstance(axes, str) else tuple(axes or ())


def ways(sharding: NamedSharding, dim: int = 0) -> int:
  """How many ways dimension `dim` (default: the batch) of such arrays is split."""
  return math.prod(sharding.mesh.shape[n] for n in split_axes(sharding, dim))


def check_batch_divisible(shapes: dict[str, Sequence[int]], shardings: dict[str, NamedSharding]):
  """Raises a UserError naming the config fields when a batch array does not divide the mesh."""
  fields = {0: 'train.batch_size (global)', 1: 'data.num_frames', 2: 'data.resolution',
            3: 'data.resolution'}
  for key, shape in shapes.items():
    for dim in range(len(shardings[key].spec)):
      names, n = split_axes(shardings[key], dim), ways(shardings[key], dim)
      if shape[dim] % n:
        raise UserError(
            f'{fields.get(dim, f"dim {dim}")}={shape[dim]} cannot be split over the mesh axes '
            f'{"x".join(names)} ({n} ways); choose a value divisible by {n} or change '
            f'--config.mesh.{" / --config.mesh.".join(names)}.')


def check_whole_clips_per_process(shape: Sequence[int], video: NamedSharding) -> None:
  """Each process loads whole clips (all frames and pixels of its share of the batch), so the
  mesh axes that split frames and rows must stay within a process (never across DCN)."""
  index = video.addressable_devices_indices_map(tuple(shape))
  for dim, what in ((1, 'frames'), (2, 'rows'), (3, 'columns')):
    spans = {s[dim].indices(shape[dim])[:2] for s in index.values()}
    check(sum(stop - start for start, stop in spans) == shape[dim],
          f'the mesh splits the {what} of a clip across processes (mesh axes '
          f'{"x".join(split_axes(video, dim))}), but each process loads whole clips; keep those '
          f'axes within a host: mesh.dcn.{" = mesh.dcn.".join(split_axes(video, dim))} = 1.')


def process_batch_size(global_batch_size: int) -> int:
  """Per-process batch size; every process feeds the same share of the global batch."""
  check(global_batch_size % jax.process_count() == 0,
        f'train.batch_size={global_batch_size} must be divisible by the number of processes '
        f'({jax.process_count()}).')
  return global_batch_size // jax.process_count()


def global_batch(local_batch: dict[str, np.ndarray], shardings: dict[str, NamedSharding]):
  """Assembles each process's numpy batch into global `jax.Array`s on the mesh."""
  return {k: jax.make_array_from_process_local_data(shardings[k], np.asarray(v))
          for k, v in local_batch.items() if k in shardings}
