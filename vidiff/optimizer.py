"""AdamW with linear warmup + cosine decay and global-norm gradient clipping."""

from collections.abc import Callable, Sequence

import jax
import optax

from vidiff.errors import check


def learning_rate_fn(train_config) -> optax.Schedule:
  """Warmup from 0 to `learning_rate` over `warmup_steps`, cosine decay to 10% at `num_steps`."""
  check(train_config.num_steps > 0, f'train.num_steps={train_config.num_steps} must be > 0.')
  warmup = min(train_config.warmup_steps, train_config.num_steps)
  return optax.warmup_cosine_decay_schedule(
      0., train_config.learning_rate, warmup_steps=warmup,
      decay_steps=max(train_config.num_steps, warmup + 1), end_value=0.1 * train_config.learning_rate)


def make(train_config, trainable: Callable[[Sequence[str]], bool] | None = None
         ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """Returns (optimizer, learning-rate schedule). `trainable(path)` (path: the parameter's dict
  keys) chooses the parameters to train; the others stay fixed (see `train_only`)."""
  lr = learning_rate_fn(train_config)
  tx = optax.chain(optax.clip_by_global_norm(train_config.grad_clip),
                   optax.adamw(lr, b1=0.9, b2=0.99, weight_decay=train_config.weight_decay))
  return (tx if trainable is None else train_only(tx, trainable)), lr


def train_only(tx: optax.GradientTransformation,
               trainable: Callable[[Sequence[str]], bool]) -> optax.GradientTransformation:
  """`tx` on the parameters where `trainable(path)` holds; the others get zero updates and no
  optimizer state (gradient clipping sees the trainable gradients only)."""
  def labels(params):
    label = lambda path, _: 'train' if trainable(key_names(path)) else 'frozen'
    return jax.tree_util.tree_map_with_path(label, params)
  return optax.multi_transform({'train': tx, 'frozen': optax.set_to_zero()}, labels)


def key_names(path) -> tuple[str, ...]:
  """The dict keys of a pytree key path (boxes such as nn.Partitioned add none)."""
  return tuple(str(k.key) for k in path if isinstance(k, jax.tree_util.DictKey))


def subtree(name: str) -> Callable[[Sequence[str]], bool]:
  """The `trainable` predicate of the parameters under params[name] only (a leading 'params'
  key, as in a variables dict, is skipped)."""
  def trainable(path: Sequence[str]) -> bool:
    names = [p for p in path if p != 'params']
    return bool(names) and names[0] == name
  return trainable
