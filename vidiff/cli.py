"""Entry-point plumbing: flag parsing and user errors as one clear line, not a traceback."""

import sys

from absl import app, flags, logging

from vidiff.errors import UserError

FLAGS = flags.FLAGS


def fail(message: str) -> None:
  """Prints `vidiff: error: message` to stderr and exits with status 2."""
  print(f'vidiff: error: {message}', file=sys.stderr)
  sys.exit(2)


def parse_flags(argv):
  """absl flag parsing with config-override mistakes reported in one line."""
  try:
    return FLAGS(argv)
  except flags.Error as e:
    fail(f'{e}. Run with --helpshort for the flags.')
  except (KeyError, AttributeError, TypeError, ValueError) as e:
    overrides = [a.split('=')[0] for a in argv[1:] if a.startswith('--config.')]
    detail = str(e).strip('\'"').replace('\\n', ' ').replace('\n', ' ')
    fail(f'bad config override ({detail}). Overrides given: {" ".join(overrides) or "none"}; '
         f'every --config.X must name an existing field of the config file.')


def config_from_flag(name: str = 'config'):
  """The parsed ConfigDict flag; a missing or broken config file is a UserError."""
  config = FLAGS[name].value
  error = getattr(config, '_error', None)  # ml_collections defers load failures to first access.
  if error is not None:
    detail = ' '.join(str(error).split())
    raise UserError(f'--{name}: could not load the config file ({detail}). Pass an existing file '
                    f'such as --{name}=configs/quickstart.py[:arg].')
  return config


def run(main) -> None:
  """app.run(main) where UserError becomes `vidiff: error: ...` and exit status 2."""
  def wrapped(argv):
    # Library INFO logs (orbax writes several per checkpoint) drown the progress bar;
    # an explicit --verbosity=0 brings them back.
    if not FLAGS['verbosity'].present:
      logging.set_verbosity(logging.WARNING)
    try:
      return main(argv)
    except UserError as e:
      fail(str(e))
  app.run(wrapped, flags_parser=parse_flags)
