r"""Scores trained VAEs, and measures the memory of decoding long videos.

  python -m vidiff.vae_eval --workdir=DIR[,DIR2] [--videos=../shared/data/real_videos]
  python -m vidiff.vae_eval --memory [--workdir=DIR] [--frames=17,65,257] [--chunk=1]

The first form reconstructs (posterior mean, EMA params of the latest checkpoint) held-out
clips of the training data (`data.source`: synthetic shapes, camera, a folder, ...), those of
the generated data sets of --sources (`--sources=synthetic,camera`) and the real videos of
--videos (each centre-cropped to a square, resized to the training resolution and cut into
clips of the training length, 1 + 4k frames) and prints a table per workdir and data: PSNR
(dB, mean over clips), SSIM, the warping error of the reconstructions by their own flow and
by the original's flow, and of the originals (`metrics.flow.warping_error`: MSE of each frame
against the next warped back by optical flow, intensities in [0, 1]; by its own flow a
reconstruction that blurs or freezes what moves looks coherent, by the original's flow (Lai et
al. 2018's definition) it does not) and flicker: mean |(r_t+1 - r_t) - (x_t+1 - x_t)| over
pixels, in [0, 1] intensities (temporal change in the reconstruction r that is not in the
original x, or change of x that r leaves out). Writes DIR/eval/vae_metrics.json.

`--memory` compiles (runs nothing) the decode of the latents of 1 + 4k frames with
`vae.decode_chunked` (--chunk latent frames at a time) and with the full decode, and prints each
program's per-device MiB from XLA's `memory_analysis()` (`perf.step_memory_mib`): peak =
arguments + outputs + temp. The model is the workdir's, or configs/vae_quickstart.py:--config_arg.
"""

import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags
from etils import epath

from configs import vae_quickstart
from vidiff import cli, evaluate, inference, perf, vae_task, video_io
from vidiff.data import pipeline
from vidiff.errors import check
from vidiff.metrics import flow
from vidiff.models import vae, vae_losses

FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_list('workdir', [], 'Training workdir(s) of VAE runs, comma-separated.')
  flags.DEFINE_string('videos', '../shared/data/real_videos',
                      'Folder of real videos to reconstruct too ("" to skip).')
  flags.DEFINE_integer('num_videos', 32, 'Held-out clips of the training data to reconstruct.')
  flags.DEFINE_list('sources', [], 'Generated data sets (synthetic, camera) whose held-out clips '
                    'are scored too, at the training clip size (e.g. a VAE trained on camera '
                    'clips scored on the shapes).')
  flags.DEFINE_enum('flow', 'dis', ['dis', 'farneback'], 'OpenCV optical flow for warping error.')
  flags.DEFINE_bool('memory', False, 'Print the decode memory table instead of scoring.')
  flags.DEFINE_list('frames', ['17', '65', '257'], 'With --memory: video lengths (1 + 4k).')
  flags.DEFINE_integer('chunk', 1, 'With --memory: latent frames per decode_chunked call.')
  flags.DEFINE_string('config_arg', 'video', 'With --memory and no --workdir: the '
                      'configs/vae_quickstart.py argument whose model is measured.')


def real_clips(folder, frames: int, resolution: int) -> dict[str, np.ndarray]:
  """{video name: uint8 [k, frames, resolution, resolution, 3]}: each video of `folder`
  centre-cropped square, resized, cut into consecutive non-overlapping clips."""
  out = {}
  for path in evaluate.video_files(epath.Path(folder)):
    video = video_io.read_video(path)
    check(len(video) >= frames, f'{path} has {len(video)} frames; the VAE clips need {frames}.')
    video = video_io.resize_video(video_io.square_crop(video), resolution, resolution)
    out[path.name] = np.stack([video[i:i + frames]
                               for i in range(0, len(video) - frames + 1, frames)])
  return out


def flicker(original: np.ndarray, recon: np.ndarray) -> float:
  """Mean |Δt recon - Δt original| in [0, 1] intensities over uint8 [N, T, H, W, 3] clips."""
  x, r = original.astype(np.float32) / 255., recon.astype(np.float32) / 255.
  return float(np.mean(np.abs(np.diff(r, axis=1) - np.diff(x, axis=1))))


def score(model, params, videos: np.ndarray, flow_method: str = 'dis') -> dict[str, float]:
  """Reconstruction scores of uint8 clips [N, T, H, W, 3] (see the module docstring)."""
  recon = vae_task.reconstruct(model, params, videos)
  x, r = vae_losses.as_video(videos), vae_losses.as_video(recon)
  psnrs = [float(vae_losses.psnr(r[i], x[i])) for i in range(len(videos))]
  return {'clips': len(videos), 'psnr': float(np.mean(psnrs)),
          'ssim': float(vae_losses.ssim(r, x)),
          'warp': flow.warping_error(recon, flow_method),
          'warp_true_motion': flow.warping_error(recon, flow_method, motion=videos),
          'warp_original': flow.warping_error(videos, flow_method),
          'flicker': flicker(videos, recon)}


def score_workdir(workdir: str, videos: str, num_videos: int, flow_method: str,
                  sources: tuple[str, ...] = ()) -> list[dict]:
  """One row per data set (the training data's held-out clips, those of each of `sources`,
  each real video of `videos`) for the VAE of `workdir`."""
  check(set(sources) <= set(pipeline.GENERATED),
        f'--sources={",".join(sources)}: held-out clips can be generated for '
        f'{pipeline.GENERATED} only; score real footage with --videos=DIR.')
  setup, state = inference.restore_setup(workdir, tasks=('vae',))
  cfg = setup.config
  check(cfg.get('task', 'diffusion') == 'vae',
        f'{workdir} holds a {cfg.get("task", "diffusion")} model; vidiff.vae_eval scores VAEs '
        f'(train one with --config=configs/vae_quickstart.py).')
  data = {}
  for source in dict.fromkeys((cfg.data.source, *sources)):
    data_config = cfg.data.copy_and_resolve_references()
    data_config.source = source
    data[f'{source} (held out)'] = pipeline.held_out_clips(data_config, num_videos)[0]
  if videos:
    data.update(real_clips(videos, cfg.data.num_frames, cfg.data.resolution))
  head = {'model': cfg.model.name, 'workdir': str(workdir), 'step': int(state.step),
          'params': sum(int(np.prod(p.shape)) for p in jax.tree.leaves(state.params))}
  return [{**head, 'data': name, **score(setup.model, state.ema_params, clips, flow_method)}
          for name, clips in data.items()]


def score_table(rows: list[dict]) -> str:
  """Markdown: a row per (model, data)."""
  lines = ['| model | params | step | data | clips | PSNR dB | SSIM | warping error | '
           'warping error, original\'s flow | warping error (original) | flicker |',
           '|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|']
  for r in rows:
    lines.append(f'| {r["model"]} | {r["params"]:,} | {r["step"]} | {r["data"]} | {r["clips"]} | '
                 f'{r["psnr"]:.2f} | {r["ssim"]:.3f} | {r["warp"]:.2e} | '
                 f'{r["warp_true_motion"]:.2e} | {r["warp_original"]:.2e} | {r["flicker"]:.4f} |')
  return '\n'.join(lines)


def abstract_params(model: vae.CausalVAE, resolution: int):
  """ShapeDtypeStructs of the model's params (nothing is initialised)."""
  x = jnp.zeros((1, 1, resolution, resolution, 3))
  return jax.eval_shape(lambda: jax.tree.map(
      lambda v: v, model.init(jax.random.PRNGKey(0), x)['params']))


def decode_memory(model: vae.CausalVAE, params, frames: list[int], resolution: int,
                  chunk: int) -> list[dict]:
  """One row per (frames, 'chunked' | 'full'): perf.step_memory_mib of the compiled decode of
  one video's latents [1, 1 + (frames-1)/t, h, w, C]; `params` may be abstract."""
  s = model.spatial_downsample
  cpu = jax.devices()[0].platform == 'cpu'
  decoders = {'chunked': lambda p, z: vae.decode_chunked(model, p, z, chunk),
              'full': lambda p, z: model.apply({'params': p}, z, method=vae.CausalVAE.decode)}
  rows = []
  for t in frames:
    model.check_video((1, t, resolution, resolution, 3))
    latent = (1, 1 + (t - 1) // model.temporal_downsample, resolution // s, resolution // s,
              model.latent_channels)
    z = jax.ShapeDtypeStruct(latent, jnp.float32)
    for name, fn in decoders.items():
      start = time.perf_counter()
      compiled = jax.jit(fn).lower(params, z).compile(
          perf.COMPILE_ONLY_CPU_OPTIONS if cpu else None)
      rows.append({'frames': t, 'decode': name, 'latent_frames': latent[1],
                   'compile_s': round(time.perf_counter() - start, 1),
                   **perf.step_memory_mib(compiled)})
  return rows


def memory_table(rows: list[dict], chunk: int) -> str:
  lines = ['| frames | latent frames | decode | peak MiB | temp MiB | output MiB |',
           '|---:|---:|---|---:|---:|---:|']
  for r in rows:
    name = f'chunked ({chunk} latent/call)' if r['decode'] == 'chunked' else 'full'
    lines.append(f'| {r["frames"]} | {r["latent_frames"]} | {name} | {r["peak"]:.1f} | '
                 f'{r["temp"]:.1f} | {r["outputs"]:.1f} |')
  return '\n'.join(lines)


def memory_main() -> None:
  frames = [int(f) for f in FLAGS.frames]
  if FLAGS.workdir:
    setup = inference.saved_setup(FLAGS.workdir[0], tasks=('vae',))
    model, cfg = setup.model, setup.config
  else:
    cfg = vae_quickstart.get_config(FLAGS.config_arg)
    model = vae_task.get_model(cfg.model)
  params = abstract_params(model, cfg.data.resolution)
  rows = decode_memory(model, params, frames, cfg.data.resolution, FLAGS.chunk)
  device = jax.devices()[0]
  print(f'Decode memory per device, {cfg.model.name}, {cfg.data.resolution}x'
        f'{cfg.data.resolution} frames, batch 1, compiled for {device.platform} '
        f'({device.device_kind}):\n')
  print(memory_table(rows, FLAGS.chunk))


def main(argv):
  del argv
  if FLAGS.memory:
    return memory_main()
  check(bool(FLAGS.workdir), 'pass --workdir=DIR (a VAE training run; several comma-separated), '
                             'or --memory.')
  for workdir in FLAGS.workdir:
    rows = score_workdir(workdir, FLAGS.videos, FLAGS.num_videos, FLAGS.flow,
                         tuple(FLAGS.sources))
    print(score_table(rows) + '\n', flush=True)
    if jax.process_index() == 0:
      out = epath.Path(workdir) / 'eval' / 'vae_metrics.json'
      out.parent.mkdir(parents=True, exist_ok=True)
      out.write_text(json.dumps(rows, indent=1) + '\n')
      print(f'wrote {out}')


if __name__ == '__main__':
  define_flags()
  cli.run(main)
