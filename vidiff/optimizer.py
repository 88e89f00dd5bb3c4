"""AdamW with linear warmup + cosine decay and global-norm gradient clipping."""

import optax

from vidiff.errors import check


def learning_rate_fn(train_config) -> optax.Schedule:
  """Warmup from 0 to `learning_rate` over `warmup_steps`, cosine decay to 10% at `num_steps`."""
  check(train_config.num_steps > 0, f'train.num_steps={train_config.num_steps} must be > 0.')
  warmup = min(train_config.warmup_steps, train_config.num_steps)
  return optax.warmup_cosine_decay_schedule(
      0., train_config.learning_rate, warmup_steps=warmup,
      decay_steps=max(train_config.num_steps, warmup + 1), end_value=0.1 * train_config.learning_rate)


def make(train_config) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """Returns (optimizer, learning-rate schedule)."""
  lr = learning_rate_fn(train_config)
  tx = optax.chain(optax.clip_by_global_norm(train_config.grad_clip),
                   optax.adamw(lr, b1=0.9, b2=0.99, weight_decay=train_config.weight_decay))
  return tx, lr
