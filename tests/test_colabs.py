"""Colab notebooks (colabs/): each .ipynb is its jupytext .py source with outputs stripped, and
every notebook executes start to end in smoke mode (VIDIFF_SMOKE=1) in a fresh python3 kernel of
this interpreter, in its own working directory, and shows what it is for (videos, images)."""

import os
import pathlib
import re
import time

import jupytext
import nbclient
import nbformat
import pytest

from conftest import REPO

COLABS = pathlib.Path(REPO) / 'colabs'
NOTEBOOKS = sorted(p.stem for p in COLABS.glob('*.py'))
CELL_TIMEOUT_S = 300
# What each notebook must display: a video ('<video' in an HTML output), an image (image/png),
# a markdown table (text/markdown with '|').
EXPECTED = {
    'quickstart': ('video', 'image'),
    'unet_vs_st_transformer': ('image', 'table'),
    'long_video': ('video', 'image'),
    'metrics': ('video', 'image', 'table'),
}
BADGE = ('https://colab.research.google.com/github/vidiff/vidiff/blob/main/colabs/'
         '{name}.ipynb')


def cells(notebook) -> list[tuple[str, str]]:
  return [(c.cell_type, c.source) for c in notebook.cells]


def test_every_notebook_is_listed():
  assert NOTEBOOKS == sorted(EXPECTED)


@pytest.mark.parametrize('name', NOTEBOOKS)
def test_ipynb_matches_its_py_source(name):
  source = jupytext.read(COLABS / f'{name}.py')
  stored = nbformat.read(COLABS / f'{name}.ipynb', as_version=4)
  regenerate = f'jupytext --update --to ipynb colabs/{name}.py'
  assert cells(stored) == cells(source), f'colabs/{name}.ipynb is stale: run `{regenerate}`'
  for cell in stored.cells:
    if cell.cell_type == 'code':
      assert not cell.outputs and cell.execution_count is None, (
          f'colabs/{name}.ipynb has outputs: run `{regenerate}`')
  assert stored.metadata.kernelspec.name == 'python3'
  assert BADGE.format(name=name) in stored.cells[0].source


def displayed(notebook) -> set[str]:
  """Which of 'video', 'image', 'table' the executed notebook's outputs show."""
  kinds = set()
  for cell in notebook.cells:
    for output in cell.get('outputs', []):
      data = output.get('data', {})
      if 'image/png' in data:
        kinds.add('image')
      if '<video' in data.get('text/html', ''):
        kinds.add('video')
      if '|---' in data.get('text/markdown', ''):
        kinds.add('table')
  return kinds


def errors(notebook) -> list[str]:
  return [f'{o.get("ename")}: {o.get("evalue")}' for c in notebook.cells
          for o in c.get('outputs', []) if o.get('output_type') == 'error']


@pytest.mark.slow
@pytest.mark.parametrize('name', NOTEBOOKS)
def test_notebook_runs_in_smoke_mode(name, tmp_path, monkeypatch):
  monkeypatch.setenv('VIDIFF_SMOKE', '1')
  monkeypatch.setenv('JAX_PLATFORMS', 'cpu')
  # One CPU device, as on a laptop or Colab (the notebooks work with any count; 8 simulated
  # devices on a 2-core machine only slow them down).
  monkeypatch.setenv('XLA_FLAGS', re.sub(r'--xla_force_host_platform_device_count=\d+', '',
                                         os.environ.get('XLA_FLAGS', '')).strip())
  notebook = jupytext.read(COLABS / f'{name}.py')
  client = nbclient.NotebookClient(notebook, timeout=CELL_TIMEOUT_S, startup_timeout=120,
                                   kernel_name='python3',
                                   resources={'metadata': {'path': str(tmp_path)}})
  start = time.perf_counter()
  try:
    client.execute()
  except nbclient.exceptions.CellExecutionError as e:
    pytest.fail(f'colabs/{name}.py failed in smoke mode:\n{e}')
  print(f'{name}: {time.perf_counter() - start:.1f} s')
  assert not errors(notebook)
  missing = set(EXPECTED[name]) - displayed(notebook)
  assert not missing, f'colabs/{name} displays no {", ".join(sorted(missing))}'
