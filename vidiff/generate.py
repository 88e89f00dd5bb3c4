"""Generating videos from a trained model and writing them for people to watch.

`generate` samples one video per prompt with any sampler and classifier-free guidance; videos
longer than one forward pass are spliced from chunks or fused from sliding windows
(`diffusion/long_video.py`). The `vidiff.sample` command and the end of training both call it.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath
from tqdm import tqdm

from vidiff import metric_writer, models, steps, video_io
from vidiff import sharding as sharding_lib
from vidiff.data import pipeline, synthetic
from vidiff.diffusion import long_video, samplers
from vidiff.errors import check
from vidiff.metrics import adherence
from vidiff.models import latent, text

LONG_MODES = ('splice', 'window')


@dataclasses.dataclass(frozen=True)
class Options:
  """How to sample. chunk_frames: frames per forward pass (default: the training clip length,
  or num_frames if smaller); overlap: frames shared by neighbouring chunks/windows (default
  chunk/4 for splice, at most the model's `diffusion.context.max_frames`, chunk/2 for window);
  trim: splice only, the last frames of each chunk that the next chunk samples anew
  (`long_video.splice`);
  freenoise: FreeNoise noise rescheduling;
  reconstruction: weight of reconstruction guidance towards known frames (0: give them to the
  model as clean context frames if it was trained with them, else replacement only);
  control_scale: strength of a ControlNet's control stream (0: the base model);
  anchor: window only, give every window but the first its first frames clean, from the windows
  before it, if the model was trained with context frames (`anchor_frames`);
  first_frame: sample in two stages, as Emu Video factorizes text-to-video (Girdhar et al. 2023,
  arXiv:2311.10709): a first frame for the prompt, then the video again with that frame given
  clean, which a model trained with context frames continues the way the prompt says. The
  first frame is an image sampled alone if the model was trained with image batches
  (`data.image_batches`), else a frame of a clip sampled for the prompt (`drawn_frame`)."""
  num_frames: int
  sampler: str = 'ddim'
  steps: int = 50
  guidance: float = 1.0
  eta: float = 0.0
  seed: int = 0
  batch_size: int = 8
  long_mode: str = 'splice'
  chunk_frames: int | None = None
  overlap: int | None = None
  trim: int = 0
  freenoise: bool = False
  reconstruction: float = 0.0
  control_scale: float = 1.0
  first_frame: bool = False
  anchor: bool = True

  def chunk(self, train_frames: int, frames: int | None = None) -> int:
    """Frames per forward pass for videos of `frames` (default num_frames) sampled frames."""
    return self.chunk_frames or min(train_frames, frames or self.num_frames)

  def overlap_frames(self, chunk: int, max_context: int = 0) -> int:
    """`overlap`, else chunk/4 for splice (at most `max_context` > 0, the clean frames the model
    learned to continue) and chunk/2 for window."""
    if self.overlap is not None:
      return self.overlap
    if self.long_mode == 'window':
      return chunk // 2
    return min(max(1, chunk // 4), max_context or chunk)


def anchor_frames(setup, options: Options, window: int, stride: int) -> int:
  """Clean frames each sliding window after the first continues: with `options.anchor`, as many
  as the model learned to continue (`diffusion.context.max_frames`), at most the windows'
  overlap; 0 without, or for a model trained without context frames."""
  context = setup.config.diffusion.context
  if not options.anchor or context.prob <= 0:
    return 0
  return min(context.max_frames, window - stride)


def overlap_of(setup, options: Options, chunk: int) -> int:
  """Frames neighbouring chunks or windows share (`Options.overlap_frames` for this model)."""
  context = setup.config.diffusion.context
  return options.overlap_frames(chunk, context.max_frames if context.prob > 0 else 0)


def options_from_config(cfg, **overrides) -> Options:
  """The config's `sample` settings (training clip length as num_frames; fields missing from a
  config saved before they existed take Options' defaults), then `overrides`."""
  s = cfg.sample
  base = dict(num_frames=cfg.data.num_frames, sampler=s.sampler, steps=s.steps,
              guidance=s.guidance, eta=s.eta, seed=s.seed, batch_size=s.batch_size,
              **{k: s.get(k, getattr(Options, k)) for k in ('first_frame', 'long_mode', 'trim')})
  return Options(**{**base, **{k: v for k, v in overrides.items() if v is not None}})


def guided_denoise_fn(setup, params, tokens, guidance: float, hint=None,
                      control_scale: float = 1.0, frames: int = 0):
  """The model with classifier-free guidance as a sampler's denoise_fn: (x_t [b, T, ...],
  t [b] or [b, T]) -> (x0_hat, eps_hat); tokens: [b, L]. hint [b, T, H, W, C]: a ControlNet's
  control stream, given to both guidance branches (None: no control). frames == 1: t is on the
  clock of `sample_schedule(setup, 1)` (images at diffusion.image_shift)."""
  schedule = sample_schedule(setup, frames)

  def apply(x, t, tok):
    if schedule is not setup.schedule:  # the model's clock for the image schedule's t
      t = steps.image_times(setup, t)
    if hint is None:
      return setup.model.apply({'params': params}, x, t, tok)
    both = jnp.tile(hint, (x.shape[0] // hint.shape[0],) + (1,) * (hint.ndim - 1))
    return setup.model.apply({'params': params}, x, t, tok, hint=both,
                             control_scale=control_scale)
  null = jnp.asarray(text.null_tokens(*tokens.shape))
  return samplers.guided_denoise_fn(apply, tokens, null, guidance, schedule,
                                    setup.config.diffusion.prediction)


def sample_schedule(setup, frames: int):
  """The schedule a sampler runs for clips of `frames` frames: for single frames, the one at
  `diffusion.image_shift` when that differs (how `steps.draw` noises 1-frame batches), else the
  model's."""
  shift = steps.image_shift(setup.config)
  if frames != 1 or shift == setup.schedule.shift:
    return setup.schedule
  return dataclasses.replace(setup.schedule, shift=shift)


def sampler_fn(setup, options: Options, window: tuple[int, int] | None = None):
  """A jitted (params, tokens [b, L], noise [b, T, H, W, 3], key, known [b, T, H, W, 3],
  mask [T], hint [b, T, H, W, C] or None) -> videos float [b, T, H, W, 3] in [-1, 1].

  Frames where mask is 1 are conditioned on `known` (exactly equal in the output): by
  reconstruction guidance if options.reconstruction > 0, else given to the model clean if it was
  trained with context frames (`diffusion.context.prob` > 0); and by replacement in the state
  at every step in any case.
  window=(frames, stride): denoise T frames as fused sliding windows of `frames` (anchored on
  clean frames with options.anchor, for a model trained with context frames).
  """
  cfg = setup.config
  sample = samplers.get(options.sampler)

  def run(params, tokens, noise, key, known, mask, hint=None):
    frames = noise.shape[1]
    schedule = sample_schedule(setup, frames)
    denoise = guided_denoise_fn(setup, params, tokens, options.guidance, hint,
                                options.control_scale, frames)
    if window is not None:
      denoise = long_video.windowed_denoise_fn(denoise, noise.shape[1], *window, options.steps,
                                               anchor=anchor_frames(setup, options, *window))
    if options.reconstruction > 0:
      denoise = long_video.reconstruction_guided(denoise, known, mask, options.reconstruction,
                                                 schedule)
    elif cfg.diffusion.context.prob > 0:
      denoise = long_video.condition_on_known(denoise, known, mask, noise)
    project = long_video.replace_known(known, mask, noise, schedule)
    # Latents have no fixed range: the samplers' clipping of x0 to [-1, 1] is for pixels.
    unclipped = {'clip_x0': False} if latent.is_latent(setup.model) else {}
    return sample(denoise, noise, key, schedule, options.steps, eta=options.eta,
                  project=project, **unclipped)
  return jax.jit(run)


def initial_noise(keys: np.ndarray, shape) -> np.ndarray:
  """One video of noise [*shape] per key: [len(keys), *shape]. A video's noise depends only on
  its own key, so it does not change with the prompts that share its batch."""
  return np.asarray(jax.vmap(lambda k: jax.random.normal(k, shape))(jnp.asarray(keys)))


def generate(setup, params, prompts, options: Options, init_image: np.ndarray | None = None,
             progress: bool = True, control: np.ndarray | None = None) -> np.ndarray:
  """Samples one video per prompt. init_image: float [H, W, 3] in [-1, 1], the first frame of
  every video, or [N, H, W, 3], one per video (with `options.first_frame`, sampled). control:
  float [N, num_frames, H, W, C], each video's control stream for a ControlNet model
  (`controlnet.depth_hint`; long videos take each chunk's frames of it).
  A latent model samples latents (chunk_frames and overlap count latent frames) and decodes
  them. Returns uint8 [N, num_frames, H, W, 3]."""
  cfg = setup.config
  shape, chunk, overlap, mode, trim = dataclasses.astuple(
      plan(setup, options, len(prompts), control, has_init_image=init_image is not None))
  frames, train_frames = shape[0], sample_shape(setup, cfg.data.num_frames)[0]
  if options.first_frame and init_image is None:
    return generate(setup, params, prompts, options, first_frames(setup, params, prompts, options,
                                                                  progress, control),
                    progress, control)
  decode = to_video_fn(setup, max(1, train_frames - 1))
  fn = sampler_fn(setup, options, window=(chunk, chunk - overlap) if mode == 'window' else None)

  tokens = text.tokenize(prompts, cfg.model.text.max_len, cfg.model.text.vocab_size)
  keys = np.stack([jax.random.fold_in(jax.random.PRNGKey(options.seed), i)
                   for i in range(len(prompts))])
  noise = initial_noise(keys, shape)
  if options.freenoise:
    noise = long_video.freenoise(noise, chunk, chunk - overlap, options.seed)
  known = np.zeros_like(noise)
  mask = np.zeros(frames, np.float32)
  if init_image is not None:
    known[:, 0], mask[0] = init_image, 1.

  shardings = setup.batch_shardings
  # Split over the batch only: a video of any length fits, the model reshards inside.
  by_batch = jax.sharding.NamedSharding(setup.mesh, shardings['tokens'].spec)
  ways = sharding_lib.ways(shardings['tokens'])
  batch = -(-min(options.batch_size, len(prompts)) // ways) * ways  # splits evenly over the mesh
  out = []
  for start in tqdm(range(0, len(prompts), batch), desc='sample', leave=False,
                    disable=not progress or jax.process_index() != 0 or len(prompts) <= batch):
    rows = slice(start, start + batch)
    tok = jax.device_put(_pad(tokens[rows], batch), shardings['tokens'])

    def sample_part(part_noise, part_known, part_mask, index=0):
      key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(options.seed), start), index)
      hint = None
      if control is not None:
        first = (long_video.chunk_starts(frames, chunk, overlap, trim)[index]
                 if mode == 'splice' else 0)
        hint = jax.device_put(_pad(control[rows, first:first + part_noise.shape[1]], batch),
                              by_batch)
      with setup.context():
        return np.asarray(jax.device_get(fn(
            params, tok, jax.device_put(part_noise, by_batch), key,
            jax.device_put(part_known, by_batch), part_mask, hint)))

    part_noise, part_known = _pad(noise[rows], batch), _pad(known[rows], batch)
    if mode == 'splice':
      videos = long_video.splice(sample_part, part_noise, chunk, overlap, part_known, mask,
                                 progress=progress and jax.process_index() == 0, trim=trim)
    else:
      videos = sample_part(part_noise, part_known, mask)
    out.append(video_io.to_uint8(decode(params, videos, by_batch))[:len(prompts) - start])
  return np.concatenate(out)[:len(prompts)]


@dataclasses.dataclass(frozen=True)
class Plan:
  """How `generate` lays out its videos: shape (T, H, W, C) drawn by the sampler, chunk frames
  per forward pass, overlap between chunks/windows, mode ('single', 'splice' or 'window'),
  trim (splice only)."""
  shape: tuple[int, int, int, int]
  chunk: int
  overlap: int
  mode: str
  trim: int


def plan(setup, options: Options, num_prompts: int, control: np.ndarray | None = None,
         has_init_image: bool = False) -> Plan:
  """`generate`'s layout of `num_prompts` videos, or a UserError naming the fix for options the
  model cannot take. Needs no parameters: commands call it before restoring a checkpoint."""
  cfg = setup.config
  res = cfg.data.resolution
  check(options.steps >= 1, f'steps={options.steps}: a sampler needs at least 1 step.')
  check(options.long_mode in LONG_MODES,
        f'long_mode={options.long_mode!r}; use one of {", ".join(LONG_MODES)}.')
  shape = sample_shape(setup, options.num_frames)
  frames, train_frames = shape[0], sample_shape(setup, cfg.data.num_frames)[0]
  chunk = options.chunk(train_frames, frames)
  overlap = overlap_of(setup, options, chunk) if frames > chunk else 0  # one chunk: none shared
  mode = 'single' if frames == chunk else options.long_mode
  trim = options.trim if mode == 'splice' else 0
  long_video.check_chunks(frames, chunk, overlap, trim)
  models.check_video_shape(cfg.model, chunk, shape[1],
                           frames_name='chunk_frames (per forward pass)')
  check_control(setup, control, (num_prompts, frames, res, res), mode)
  check(not has_init_image or not latent.is_latent(setup.model),
        'init_image (image-to-video) is not supported for latent diffusion models yet.')
  if options.first_frame and not has_init_image:
    check_first_frame(setup)
  return Plan(shape, chunk, overlap, mode, trim)


def check_first_frame(setup) -> None:
  """A UserError unless the model can be sampled in two stages (`Options.first_frame`)."""
  check(not latent.is_latent(setup.model),
        'first_frame sampling is not supported for latent diffusion models yet; sample without it.')
  check(setup.config.diffusion.context.prob > 0,
        'first_frame sampling continues a sampled first frame, which needs a model trained with '
        'context frames (diffusion.context.prob > 0); sample without it.')


def first_frames(setup, params, prompts, options: Options, progress: bool = True,
                 control: np.ndarray | None = None) -> np.ndarray:
  """The first stage of `Options.first_frame`: float [N, H, W, 3] in [-1, 1], for a model
  trained with image batches (`data.image_batches`) an image sampled for each prompt (Emu
  Video's text -> image -> video), else frame `drawn_frame` of a training-length clip."""
  check_first_frame(setup)
  data = setup.config.data
  if data.get('image_batches', 0.) and control is None:
    stage = dataclasses.replace(options, first_frame=False, num_frames=1)
    if pipeline.still_image_captions(data):  # the captions its images had
      prompts = [synthetic.still_caption(p) for p in prompts]
    return pipeline.as_float(generate(setup, params, prompts, stage, progress=progress)[:, 0])
  frames = min(options.num_frames, setup.config.data.num_frames)
  stage = dataclasses.replace(options, first_frame=False, num_frames=frames)
  clips = generate(setup, params, prompts, stage, progress=progress,
                   control=None if control is None else control[:, :frames])
  return pipeline.as_float(clips[:, drawn_frame(setup, frames)])


def drawn_frame(setup, frames: int) -> int:
  """The frame of a stage-1 clip of `frames` frames that stage 2 starts from: the first one that
  training never gives as clean context (`diffusion.context.max_frames`), so the model learned
  to draw it in every clip. Frame 0 is in the loss only of clips without context (a fifth in
  the quickstart): drawn worst, it made a jump into frame 1 (README, "What the rise is made of")."""
  return min(setup.config.diffusion.context.max_frames, frames - 1)


def sample_shape(setup, num_frames: int) -> tuple[int, int, int, int]:
  """(T, H, W, C) the sampler draws for videos of `num_frames` frames: the video's, or its
  latent's for a latent model (a UserError naming the fix if the VAE cannot take it)."""
  res = setup.config.data.resolution
  if latent.is_latent(setup.model):
    return tuple(setup.model.latent_shape((1, num_frames, res, res, 3))[1:])
  return num_frames, res, res, 3


def to_video_fn(setup, chunk: int):
  """(params, samples [b, T, ...] numpy, sharding) -> videos float [b, frames, H, W, 3]:
  the samples themselves, or a latent model's decode, `chunk` latent frames at a time."""
  if not latent.is_latent(setup.model):
    return lambda params, x, sharding: x
  decode = jax.jit(lambda params, z: latent.decode_chunked(setup.model, params, z, chunk))

  def to_video(params, z, sharding):
    with setup.context():
      return np.asarray(jax.device_get(decode(params, jax.device_put(z, sharding))))
  return to_video


def check_control(setup, control, shape: tuple[int, int, int, int], mode: str) -> None:
  """A UserError unless `control` (or None) fits videos of `shape` (N, T, H, W) and the model."""
  if control is None:
    return
  check(hasattr(setup.model, 'control'),
        f'a control stream was given but this is a {setup.config.model.name} model without a '
        f'ControlNet; sample from a workdir trained with python -m vidiff.main '
        f'--config=configs/controlnet.py --config.controlnet.base_workdir=BASE --workdir=DIR.')
  check(control.ndim == 5 and control.shape[:4] == shape,
        f'the control stream has shape {control.shape}; it needs one map per frame of each '
        f'video: [N, T, H, W, C] with (N, T, H, W) = {shape}.')
  check(mode != 'window', 'long_mode=window does not take a control stream; use '
                          '--long_mode=splice for long controlled videos.')


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
  """Samples the config's prompts with the EMA params; writes DIR/samples/step_N and scores
  prompt adherence (synthetic data; other sources sample held-out captions, unscored)."""
  cfg = setup.config
  step = int(state.step)
  prompts = training_prompts(cfg)
  videos = generate(setup, state.ema_params, prompts, options_from_config(cfg))
  scores = ({f'sample/{k}': v for k, v in adherence.score_batch(videos, prompts).items()}
            if cfg.data.source == 'synthetic' else {})
  if jax.process_index() == 0:
    out_dir = epath.Path(workdir) / 'samples' / f'step_{step}'
    write_videos(out_dir, videos, prompts, cfg.sample.fps)
    writer.scalars(step, scores)
    writer.image(step, 'samples', video_io.grid(videos))
    metric_writer.say(f'samples -> {out_dir}' + ('  prompt adherence: ' if scores else '') +
                      ', '.join(f'{k.split("/")[1]} {v:.2f}' for k, v in scores.items()))
  return scores


def training_prompts(cfg) -> list[str]:
  """`sample.num_prompts` prompts: from the synthetic grammar (with the data's motions), or the
  first held-out captions."""
  n = cfg.sample.num_prompts
  if cfg.data.source == 'synthetic':
    return synthetic.example_prompts(n, seed=cfg.sample.seed,
                                     max_objects=cfg.data.synthetic.max_objects,
                                     motion=cfg.data.synthetic.motion)
  source = pipeline.make_source(cfg.data, 'eval')
  return [source.caption(i % len(source)) for i in range(n)]
