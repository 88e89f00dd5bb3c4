"""A prompt encoder trained from scratch: hashed word tokens and a small Transformer.

No vocabulary file and no download: each lower-cased word maps to a bucket by CRC32, so any
prompt tokenizes the same way on every host. Token 0 is padding and token 1 a BOS token
that is always present, so an empty prompt (the classifier-free-guidance null prompt) is
a valid sequence of one token.
"""

import re
import zlib
from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from vidiff.models import layers

PAD, BOS = 0, 1
_WORD = re.compile(r'[a-z0-9]+')


def tokenize(prompts: Sequence[str], max_len: int, vocab_size: int) -> np.ndarray:
  """Prompts -> int32 [N, max_len]: BOS, hashed words (truncated), then PAD."""
  out = np.zeros((len(prompts), max_len), np.int32)
  for i, prompt in enumerate(prompts):
    words = _WORD.findall(prompt.lower())[:max_len - 1]
    ids = [BOS] + [2 + zlib.crc32(w.encode()) % (vocab_size - 2) for w in words]
    out[i, :len(ids)] = ids
  return out


def null_tokens(batch: int, max_len: int) -> np.ndarray:
  """The empty prompt: int32 [batch, max_len] holding only BOS."""
  return tokenize([''] * batch, max_len, vocab_size=3)


class TextEncoder(nn.Module):
  """tokens [B, L] -> (embeddings [B, L, width], mask [B, L] bool, pooled [B, width])."""
  vocab_size: int = 4096
  width: int = 128
  depth: int = 2
  num_heads: int = 4
  max_len: int = 16
  dtype: layers.Dtype = jnp.float32

  @nn.compact
  def __call__(self, tokens):
    mask = tokens != PAD
    table = self.param('embed', layers.partitioned(nn.initializers.normal(0.02), ('vocab', 'embed')),
                       (self.vocab_size, self.width))
    # Gathered whole before the lookup (as FSDP would anyway): a gather from a sharded table
    # yields embed-sharded rows that XLA can only re-shard to the batch layout by replicating.
    x = jnp.take(layers.constrain(table, (None, None)), tokens, axis=0).astype(self.dtype)
    pos = self.param('position', layers.partitioned(nn.initializers.normal(0.02), (None, 'embed')),
                     (self.max_len, self.width))
    x = x + pos[None, :tokens.shape[1]].astype(x.dtype)
    x = layers.constrain(x, ('act_batch', None, 'act_embed'))
    attn_mask = mask[:, None, None, :]
    for i in range(self.depth):
      h = layers.layer_norm(self.dtype, name=f'norm_attn_{i}')(x)
      x = x + layers.MultiHeadAttention(self.num_heads, self.width // self.num_heads,
                                        dtype=self.dtype, name=f'attn_{i}')(h, mask=attn_mask)
      h = layers.layer_norm(self.dtype, name=f'norm_mlp_{i}')(x)
      x = x + layers.MLP(dtype=self.dtype, name=f'mlp_{i}')(h)
      x = layers.constrain(x, ('act_batch', None, 'act_embed'))
    x = layers.layer_norm(self.dtype, name='norm_out')(x)
    weights = mask[..., None].astype(x.dtype)
    pooled = (x * weights).sum(1) / weights.sum(1)
    return x, mask, pooled
