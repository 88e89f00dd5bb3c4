"""A depth ControlNet on a trained denoiser as a training task (`config.task = 'controlnet'`).

  python -m vidiff.main --config=configs/controlnet.py \
      --config.controlnet.base_workdir=BASE --workdir=DIR

The model is `controlnet.ControlledDenoiser` of `config.model` (the base checkpoint's model
config) with the fields of `config.controlnet`. A fresh run loads the EMA weights of BASE's
latest checkpoint into params['base'] and copies them into the ControlNet's encoder
(`init_params`); only params['control'] are trained (`controlnet.trainable`, and the base sits
behind `stop_gradient`, so no weight gradient is even computed for it). Batches carry 'depth'
(data.depth=True), which becomes the control stream by `controlnet.depth_hint`. The end of
training samples held-out depth streams with and without the control and scores how well the
videos follow them (`compare`, `metrics.control`).
"""

import dataclasses

import jax
import numpy as np
from etils import epath

from vidiff import generate, metric_writer, steps, video_io
from vidiff.data import pipeline, synthetic
from vidiff.errors import check
from vidiff.metrics import control as control_metrics
from vidiff.models import controlnet


def get_model(config) -> controlnet.ControlledDenoiser:
  """The base denoiser of `config.model` with the ControlNet of `config.controlnet`."""
  check('controlnet' in config, 'task=controlnet needs a config.controlnet section; start from '
                                'configs/controlnet.py.')
  check(config.data.get('depth', False), 'task=controlnet trains on depth maps: set '
                                         '--config.data.depth=True (configs/controlnet.py does).')
  c = config.controlnet
  return controlnet.get_controlled_model(config.model, c.num_blocks or None,
                                         tuple(c.stem_channels))


def init_inputs(config) -> tuple:
  """(video, t, tokens, hint): one example of the training shapes."""
  video, t, tokens = steps.example_inputs(config)
  return video, t, tokens, video[..., :1]


def loss(params, setup, batch, noise: dict, train: bool):
  """The diffusion loss of the controlled model on a batch, with the batch's depth as the
  control and no gradient into the frozen base."""
  frozen = {**params, 'base': jax.lax.stop_gradient(params['base'])}
  return steps.loss_fn(frozen, setup, batch, noise, train,
                       hint=controlnet.depth_hint(batch['depth']))


def evaluate(params, setup, batch, noise: dict):
  return loss(params, setup, batch, noise, train=False)[0]


def init_params(setup, state):
  """`state` with params and EMA = the base checkpoint's EMA weights in 'base' and their copy
  in the ControlNet's encoder (ControlNet's initialisation; zero projections stay zero)."""
  from vidiff import inference  # inference -> train -> tasks -> here
  base_dir = setup.config.controlnet.base_workdir
  check(base_dir, 'task=controlnet starts from a trained denoiser: set '
                  '--config.controlnet.base_workdir to its workdir (python -m vidiff.main '
                  '--config=configs/quickstart.py --workdir=BASE trains one).')
  _, base_state = inference.restore_matching(
      base_dir, 'diffusion', setup.config.model, 'controlnet.base_workdir',
      'give this run the base\'s config argument (configs/controlnet.py:<backbone>,<size> as in '
      'configs/quickstart.py)')
  targets = setup.state_shardings.params
  base = jax.device_put(base_state.ema_params, targets['base'])
  control = jax.device_put(controlnet.init_control_from_base(base, state.params['control']),
                           targets['control'])
  params = {'base': base, 'control': control}
  metric_writer.say(f'ControlNet initialised from {base_dir} (step {int(base_state.step)})')
  return state.with_weights(params)


def background(data_config):
  """The flat background colour of the source (the synthetic shapes'), or None."""
  return synthetic.BACKGROUND if data_config.source == 'synthetic' else None


def compare(setup, params, count: int, options=None, progress: bool = False):
  """Samples the first `count` held-out captions with their clips' depth as the control, at
  scale 0 (the base model) and at `options.control_scale`, from the same noise.

  Returns ({'base': scores, 'controlnet': scores, 'real': scores of the held-out clips
  themselves}, videos uint8 [count, T, H, 4W, 3]: depth | real | base | controlled, captions).
  """
  cfg = setup.config
  real, captions, depth = pipeline.held_out_clips(cfg.data, count, with_depth=True)
  options = options or generate.options_from_config(cfg)
  hint = np.asarray(controlnet.depth_hint(depth))
  sample = lambda scale: generate.generate(
      setup, params, captions, dataclasses.replace(options, control_scale=scale),
      progress=progress, control=hint)
  base, controlled = sample(0.0), sample(options.control_scale)
  score = lambda v: control_metrics.scores(v, depth, background(cfg.data))
  grey = video_io.to_uint8(np.repeat(hint, 3, -1))
  return ({'base': score(base), 'controlnet': score(controlled), 'real': score(real)},
          np.concatenate([grey, real, base, controlled], axis=3), captions)


def write_samples(setup, state, workdir, writer) -> None:
  """Writes depth | real | base | ControlNet videos of `controlnet.num_samples` held-out clips
  to DIR/samples/step_N and logs how well each follows the depth ('sample/...')."""
  cfg, step = setup.config, int(state.step)
  if cfg.controlnet.num_samples <= 0:
    return
  table, videos, captions = compare(setup, state.ema_params, cfg.controlnet.num_samples)
  if jax.process_index() == 0:
    out_dir = epath.Path(workdir) / 'samples' / f'step_{step}'
    generate.write_videos(out_dir, videos, captions, cfg.sample.fps)
    writer.scalars(step, {f'sample/{name}_{k}': v for name, row in table.items()
                          for k, v in row.items()})
    writer.image(step, 'control', video_io.grid(videos))
    metric_writer.say(f'depth | real | base | ControlNet -> {out_dir}\n' + summary(table))


def summary(table: dict[str, dict[str, float]]) -> str:
  """A text table: one row per model, a column per score."""
  keys = sorted({k for row in table.values() for k in row})
  lines = [f'{"":12s}' + ''.join(f'{k:>16s}' for k in keys)]
  lines += [f'{name:12s}' + ''.join(f'{row.get(k, float("nan")):16.3f}' for k in keys)
            for name, row in table.items()]
  return '\n'.join(lines)

