"""What a run trains: `config.task` = 'diffusion' (the text-to-video denoiser), 'vae' (the
causal video VAE, `vae_task`), 'latent' (a denoiser of a trained VAE's latents, `latent_task`)
or 'controlnet' (a depth ControlNet on a trained denoiser, `control_task`). The train loop, mesh, shardings, checkpoints and logs are the same for all;
a Task supplies only what differs:

  model(config) -> nn.Module              check_shape(config, frames, side, frames_name)
  init_inputs(config) -> init args        draw(rng, setup, batch, train) -> the step's randomness
  loss(params, setup, batch, noise, train) -> (loss, aux)
  evaluate(params, setup, batch, noise) -> eval loss, or {'loss', 'psnr', ...}
  write_samples(setup, state, workdir, writer): what the end of training writes under samples/
  trainable(path) -> bool: which parameters the optimizer updates (None: all)
  init_params(setup, state) -> state: pretrained weights for a fresh state (None: none)
"""

import dataclasses
from collections.abc import Callable

from vidiff import control_task, generate, latent_task, models, steps, vae_task
from vidiff.errors import UserError
from vidiff.models import controlnet


@dataclasses.dataclass(frozen=True)
class Task:
  model: Callable
  check_shape: Callable
  init_inputs: Callable
  draw: Callable
  loss: Callable
  evaluate: Callable
  write_samples: Callable
  trainable: Callable | None = None
  init_params: Callable | None = None


def write_diffusion_samples(setup, state, workdir, writer) -> None:
  if setup.config.sample.num_prompts > 0:
    generate.write_training_samples(setup, state, workdir, writer)


def check_pixel_shape(config, *shape) -> None:
  """`models.check_video_shape` of config.model: clips go straight into the denoiser."""
  models.check_video_shape(config.model, *shape)


DIFFUSION = Task(
    model=lambda config: models.get_model(config.model), check_shape=check_pixel_shape,
    init_inputs=steps.example_inputs, draw=steps.draw, loss=steps.loss_fn,
    evaluate=lambda params, setup, batch, noise: steps.loss_fn(params, setup, batch, noise,
                                                               False)[0],
    write_samples=write_diffusion_samples)

VAE = Task(
    model=lambda config: vae_task.get_model(config.model),
    check_shape=lambda config, *shape: vae_task.check_video_shape(config.model, *shape),
    init_inputs=vae_task.init_inputs,
    draw=vae_task.draw, loss=vae_task.loss, evaluate=vae_task.evaluate,
    write_samples=vae_task.write_reconstructions)

CONTROLNET = Task(
    model=control_task.get_model, check_shape=check_pixel_shape,
    init_inputs=control_task.init_inputs, draw=steps.draw, loss=control_task.loss,
    evaluate=control_task.evaluate, write_samples=control_task.write_samples,
    trainable=controlnet.trainable, init_params=control_task.init_params)

LATENT = Task(
    model=latent_task.get_model, check_shape=latent_task.check_shape,
    init_inputs=latent_task.init_inputs, draw=latent_task.draw, loss=latent_task.loss,
    evaluate=latent_task.evaluate, write_samples=write_diffusion_samples,
    trainable=latent_task.trainable, init_params=latent_task.init_params)

TASKS = {'diffusion': DIFFUSION, 'vae': VAE, 'latent': LATENT, 'controlnet': CONTROLNET}


def get(config) -> Task:
  """The Task of `config.task` (configs without the field train diffusion)."""
  name = config.get('task', 'diffusion')
  if name not in TASKS:
    raise UserError(f'task={name!r}; choose one of {sorted(TASKS)} (configs/quickstart.py '
                    f'trains diffusion, configs/vae_quickstart.py the VAE, configs/latent_quickstart.py '
                    f'latent diffusion on it, configs/controlnet.py a ControlNet).')
  return TASKS[name]
