"""A local Google Cloud Storage for tests: gcp-storage-emulator plus what orbax needs of GCS.

  python tests/gcs_emulator.py --port=PORT --bucket=NAME

Serves the GCS JSON API on 127.0.0.1 from memory. The stock emulator omits three things
that TensorStore (orbax's array writer) and gcsfs rely on; they are added here:
`x-goog-generation` on downloads, `ifGenerationMatch` / `ifGenerationNotMatch`
preconditions (OCDBT commits its manifest with them), and `moveTo` (gcsfs renames).
`client_env(port)` is the environment that points gcsfs, TensorStore and etils at it.
"""

import argparse
import time
from http import HTTPStatus

from gcp_storage_emulator import server
from gcp_storage_emulator.exceptions import NotFound
from gcp_storage_emulator.handlers import objects


def client_env(port: int) -> dict[str, str]:
  """Environment variables that send gs:// reads and writes to the emulator on `port`."""
  url = f'http://127.0.0.1:{port}'
  return {'STORAGE_EMULATOR_HOST': url, 'TENSORSTORE_GCS_HTTP_URL': url,
          'GOOGLE_AUTH_TOKEN_FOR_TESTING': 'emulator',
          # gcsfs's bucket-layout probe speaks gRPC to the real service: skip it.
          'GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT': 'false'}


def _generation(storage, bucket: str, name: str) -> str:
  try:
    return storage.get_file_obj(bucket, name)['generation']
  except NotFound:
    return '0'  # GCS's generation of an object that does not exist


def _unmet(query, generation: str) -> HTTPStatus | None:
  if 'ifGenerationMatch' in query and query['ifGenerationMatch'][0] != generation:
    return HTTPStatus.PRECONDITION_FAILED
  if 'ifGenerationNotMatch' in query and query['ifGenerationNotMatch'][0] == generation:
    return HTTPStatus.NOT_MODIFIED
  return None


def _download_with_generation(download):
  def handler(request, response, storage, *args, **kwargs):
    generation = _generation(storage, request.params['bucket_name'], request.params['object_id'])
    unmet = _unmet(request.query, generation) if generation != '0' else None
    if unmet:
      response.status = unmet
      return
    download(request, response, storage, *args, **kwargs)
    if generation != '0':
      response['x-goog-generation'] = generation
  return handler


def _insert_with_preconditions(insert):
  def handler(request, response, storage, *args, **kwargs):
    name = request.query.get('name', [None])[0]
    if name is not None and _unmet(request.query, _generation(
        storage, request.params['bucket_name'], name)):
      response.status = HTTPStatus.PRECONDITION_FAILED
      return
    insert(request, response, storage, *args, **kwargs)
  return handler


def _move(request, response, storage, *args, **kwargs):
  bucket, source = request.params['bucket_name'], request.params['object_id']
  try:
    moved = objects._copy(request.base_url, storage, bucket, source, bucket,  # pylint: disable=protected-access
                          request.params['dest_object_id'])
  except NotFound:
    response.status = HTTPStatus.NOT_FOUND
    return
  storage.delete_file(bucket, source)
  response.json(moved)


def patch_emulator():
  """Adds generations, preconditions and moveTo to the emulator's routes (idempotent)."""
  if getattr(server, '_vidiff_patched', False):
    return
  patched = {objects.download: _download_with_generation(objects.download),
             objects.insert: _insert_with_preconditions(objects.insert)}
  objects.download = patched[objects.download]  # `get ...?alt=media` calls it by name
  for _, handlers in server.HANDLERS:
    for method, handler in list(handlers.items()):
      handlers[method] = patched.get(handler, handler)
  move = (r'^/storage/v1/b/(?P<bucket_name>[-.\w]+)/o/(?P<object_id>.*[^/]+)'
          r'/moveTo/o/(?P<dest_object_id>.*[^/]+)$', {'POST': _move})
  server.HANDLERS = (move, *server.HANDLERS)
  server._vidiff_patched = True  # pylint: disable=protected-access


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--port', type=int, required=True)
  parser.add_argument('--bucket', default='vidiff-test')
  args = parser.parse_args()
  patch_emulator()
  emulator = server.create_server('127.0.0.1', args.port, in_memory=True, default_bucket=args.bucket)
  emulator.start()
  print(f'serving gs://{args.bucket} on 127.0.0.1:{args.port}', flush=True)
  while True:
    time.sleep(3600)


if __name__ == '__main__':
  main()
