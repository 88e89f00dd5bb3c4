"""What a run trains: `config.task` = 'diffusion' (the text-to-video denoiser) or 'vae' (the
causal video VAE, `vae_task`). The train loop, mesh, shardings, checkpoints and logs are the
same for both; a Task supplies only what differs:

  model(model_config) -> nn.Module        check_shape(model_config, frames, side, frames_name)
  init_inputs(config) -> init args        draw(rng, setup, batch, train) -> the step's randomness
  loss(params, setup, batch, noise, train) -> (loss, aux)
  evaluate(params, setup, batch, noise) -> eval loss, or {'loss', 'psnr', ...}
  write_samples(setup, state, workdir, writer): what the end of training writes under samples/
"""

import dataclasses
from collections.abc import Callable

import jax.numpy as jnp

from vidiff import generate, models, steps, vae_task
from vidiff.errors import UserError


@dataclasses.dataclass(frozen=True)
class Task:
  model: Callable
  check_shape: Callable
  init_inputs: Callable
  draw: Callable
  loss: Callable
  evaluate: Callable
  write_samples: Callable


def diffusion_inputs(config) -> tuple:
  """One example of the training shapes (video, t, tokens): parameter shapes never depend on
  the batch size."""
  d = config.data
  return (jnp.zeros((1, d.num_frames, d.resolution, d.resolution, 3), jnp.float32),
          jnp.zeros((1,), jnp.float32), jnp.zeros((1, config.model.text.max_len), jnp.int32))


def write_diffusion_samples(setup, state, workdir, writer) -> None:
  if setup.config.sample.num_prompts > 0:
    generate.write_training_samples(setup, state, workdir, writer)


DIFFUSION = Task(
    model=models.get_model, check_shape=models.check_video_shape, init_inputs=diffusion_inputs,
    draw=steps.draw, loss=steps.loss_fn,
    evaluate=lambda params, setup, batch, noise: steps.loss_fn(params, setup, batch, noise,
                                                               False)[0],
    write_samples=write_diffusion_samples)

VAE = Task(
    model=vae_task.get_model, check_shape=vae_task.check_video_shape,
    init_inputs=vae_task.init_inputs, draw=vae_task.draw, loss=vae_task.loss,
    evaluate=vae_task.evaluate, write_samples=vae_task.write_reconstructions)

TASKS = {'diffusion': DIFFUSION, 'vae': VAE}


def get(config) -> Task:
  """The Task of `config.task` (configs without the field train diffusion)."""
  name = config.get('task', 'diffusion')
  if name not in TASKS:
    raise UserError(f'task={name!r}; choose one of {sorted(TASKS)} (configs/quickstart.py '
                    f'trains diffusion, configs/vae_quickstart.py the VAE).')
  return TASKS[name]
