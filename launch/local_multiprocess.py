r"""N JAX processes on this machine, each with its own CPU devices: the multi-host path, locally.

  python launch/local_multiprocess.py --num_processes=2 --devices_per_process=4 -- \
      --config=configs/quickstart.py:unet3d,tiny --workdir=/tmp/vidiff_mp \
      --config.mesh.data=4 --config.mesh.time=2 --config.mesh.dcn.data=2

Everything after `--` goes to `python -m vidiff.main` (or `--module`) in every process, plus
`--coordinator_address=127.0.0.1:PORT --num_processes=N --process_id=I`. Output lines are
prefixed with `[I]`. SIGTERM and Ctrl-C are forwarded to all processes (a preemption drill:
they checkpoint and exit 143). The exit status is the first non-zero one, else 0.
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
  """(launcher options, arguments for the module) split at `--`."""
  split = argv.index('--') if '--' in argv else len(argv)
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--num_processes', type=int, default=2)
  parser.add_argument('--devices_per_process', type=int, default=4)
  parser.add_argument('--module', default='vidiff.main')
  parser.add_argument('--port', type=int, default=0, help='coordinator port (0: a free one)')
  options = parser.parse_args(argv[:split])
  if options.num_processes < 1 or options.devices_per_process < 1:
    parser.error('--num_processes and --devices_per_process must be >= 1')
  return options, argv[split + 1:]


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def commands(options, args: list[str], port: int) -> list[list[str]]:
  """One command line per process."""
  return [[sys.executable, '-m', options.module, *args,
           f'--coordinator_address=127.0.0.1:{port}', f'--num_processes={options.num_processes}',
           f'--process_id={i}'] for i in range(options.num_processes)]


def process_env(devices: int) -> dict[str, str]:
  flags = os.environ.get('XLA_FLAGS', '').split()
  flags = [f for f in flags if not f.startswith('--xla_force_host_platform_device_count')]
  return dict(os.environ, JAX_PLATFORMS='cpu',
              XLA_FLAGS=' '.join(flags + [f'--xla_force_host_platform_device_count={devices}']))


def relay(index: int, stream, out) -> None:
  """Copies `stream` to `out` line by line, prefixed with the process index."""
  for line in iter(stream.readline, ''):
    out.write(f'[{index}] {line}')
    out.flush()


def launch(options, args: list[str]) -> int:
  """Runs the processes to the end; returns the first non-zero exit status, else 0."""
  port = options.port or free_port()
  env = process_env(options.devices_per_process)
  procs = [subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
           for cmd in commands(options, args, port)]
  threads = [threading.Thread(target=relay, args=(i, stream, out), daemon=True)
             for i, p in enumerate(procs)
             for stream, out in ((p.stdout, sys.stdout), (p.stderr, sys.stderr))]
  for t in threads:
    t.start()
  forward = lambda signum, frame: [p.send_signal(signum) for p in procs if p.poll() is None]
  signal.signal(signal.SIGTERM, forward)
  signal.signal(signal.SIGINT, forward)
  codes = [p.wait() for p in procs]
  codes = [128 - c if c < 0 else c for c in codes]  # killed by signal n: 128 + n, as a shell
  for t in threads:
    t.join()
  return next((c for c in codes if c != 0), 0)


def main(argv: list[str]) -> int:
  options, args = parse(argv)
  return launch(options, args)


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
