"""The one exception type for mistakes a user can fix (config, paths, shapes, meshes).

Entry points catch `UserError` and print its message as a single line; anything else is
a bug in vidiff and keeps its traceback.
"""


class UserError(Exception):
  """A problem in the user's input. The message names the problem and the fix."""


def check(condition: bool, message: str) -> None:
  """Raises `UserError(message)` unless `condition` holds."""
  if not condition:
    raise UserError(message)
