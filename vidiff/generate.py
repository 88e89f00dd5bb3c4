"""Generating videos from a trained model and writing them for people to watch.

`generate` samples one video per prompt with DDIM + classifier-free guidance; the `vidiff.sample`
command and the end of training both call it.
"""

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags
from etils import epath
from tqdm import tqdm

from vidiff import metric_writer, video_io
from vidiff import sharding as sharding_lib
from vidiff.data import synthetic
from vidiff.diffusion import samplers
from vidiff.metrics import adherence
from vidiff.models import text


def sampler_fn(setup, *, steps: int, guidance: float, eta: float, video_shape):
  """A jitted (params, tokens [b, L], rngs [b, 2]) -> videos float [b, T, H, W, 3] in [-1, 1].

  Each video's initial noise comes from its own key, so a prompt's video does not depend on
  which other prompts share its batch.
  """
  cfg = setup.config

  def run(params, tokens, rngs):
    apply = lambda x, t, tok: setup.model.apply({'params': params}, x, t, tok)
    null = jnp.asarray(text.null_tokens(*tokens.shape))
    denoise = samplers.guided_denoise_fn(apply, tokens, null, guidance, setup.schedule,
                                         cfg.diffusion.prediction)
    noise = jax.vmap(lambda r: jax.random.normal(r, video_shape))(rngs)
    return samplers.ddim(denoise, noise, jax.random.fold_in(rngs[0], 1), setup.schedule,
                         steps, eta)
  return jax.jit(run)


def generate(setup, params, prompts, *, num_frames: int, steps: int, guidance: float,
             eta: float = 0.0, seed: int = 0, batch_size: int = 8) -> np.ndarray:
  """Samples one video per prompt. Returns uint8 [N, num_frames, H, W, 3]."""
  cfg = setup.config
  res = cfg.data.resolution
  tokens = text.tokenize(prompts, cfg.model.text.max_len, cfg.model.text.vocab_size)
  keys = np.stack([jax.random.fold_in(jax.random.PRNGKey(seed), i) for i in range(len(prompts))])
  fn = sampler_fn(setup, steps=steps, guidance=guidance, eta=eta,
                  video_shape=(num_frames, res, res, 3))
  sharding = setup.batch_shardings['tokens']
  ways = sharding_lib.ways(sharding)
  batch_size = -(-batch_size // ways) * ways  # the batch must split evenly over the mesh
  out = []
  for start in tqdm(range(0, len(prompts), batch_size), desc='sample', leave=False,
                    disable=jax.process_index() != 0):
    tok = jax.device_put(_pad(tokens[start:start + batch_size], batch_size), sharding)
    key = jax.device_put(_pad(keys[start:start + batch_size], batch_size), sharding)
    with setup.context():
      videos = fn(params, tok, key)
    out.append(video_io.to_uint8(jax.device_get(videos))[:len(prompts) - start])
  return np.concatenate(out)[:len(prompts)]


def _pad(x: np.ndarray, size: int) -> np.ndarray:
  """Pads axis 0 to `size` by repeating the last row (keeps one compiled shape)."""
  return np.concatenate([x, np.repeat(x[-1:], size - len(x), axis=0)]) if len(x) < size else x


def write_videos(out_dir, videos: np.ndarray, prompts, fps: int) -> list[epath.Path]:
  """Writes each video as mp4 + gif (upscaled for viewing), a grid PNG and the raw npz."""
  out_dir = epath.Path(out_dir)
  paths = []
  for i, (video, prompt) in enumerate(zip(videos, prompts)):
    name = f'{i:02d}_{"_".join(prompt.split())[:60]}'
    for ext in ('mp4', 'gif'):
      video_io.write_video(out_dir / f'{name}.{ext}', video_io.upscale(video), fps)
    paths.append(out_dir / f'{name}.mp4')
  video_io.write_image(out_dir / 'grid.png', video_io.grid(video_io.upscale(videos, 64)))
  with (out_dir / 'samples.npz').open('wb') as f:
    np.savez_compressed(f, videos=videos, prompts=np.asarray(prompts))
  return paths


def write_training_samples(setup, state, workdir, writer) -> dict[str, float]:
  """Samples the config's prompts with the EMA params; writes DIR/samples/step_N and scores."""
  cfg = setup.config
  step = int(state.step)
  prompts = synthetic.example_prompts(cfg.sample.num_prompts, seed=cfg.sample.seed,
                                      max_objects=cfg.data.synthetic.max_objects)
  videos = generate(setup, state.ema_params, prompts, num_frames=cfg.data.num_frames,
                    steps=cfg.sample.steps, guidance=cfg.sample.guidance, eta=cfg.sample.eta,
                    seed=cfg.sample.seed, batch_size=cfg.sample.batch_size)
  scores = {f'sample/{k}': v for k, v in adherence.score_batch(videos, prompts).items()}
  if jax.process_index() == 0:
    out_dir = epath.Path(workdir) / 'samples' / f'step_{step}'
    write_videos(out_dir, videos, prompts, cfg.sample.fps)
    writer.scalars(step, scores)
    writer.image(step, 'samples', video_io.grid(videos))
    metric_writer.say(f'samples -> {out_dir}  prompt adherence: ' +
               ', '.join(f'{k.split("/")[1]} {v:.2f}' for k, v in scores.items()))
  return scores

