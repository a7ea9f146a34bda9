"""Versions under a model's base path: which may load, and loading one so it can serve.

The layout and which names are versions are TF Serving's (models/serving_layout.py); which
versions there are and when one is whole are models/storage.py's, the rule the baseline,
rollback and batch scoring apply too. A poll takes snapshot() of each version: None while its
listing alone shows it is not whole (a SavedModel file missing, or a file missing or of
another size than its manifest says), so it is not even tried. load() runs the full check
first: a version with a manifest loads only if every file, assets/ included, matches it
(SHA-256); one without (a foreign copy: the stock TFX Pusher copies file by file) only if
saved_model.pb's assets are there and its listing is the poller's previous one (`files`), or
else unchanged over storage.SETTLE_SECONDS. A version that is not whole fails to load with
DATA_LOSS and why. It is served only once it has loaded and answered one request built from
features.py.

After load a version serves from memory (variables and asset tables are read at load), so a
file that changes afterwards does not change its answers; LoadedModel.files is the listing it
was loaded from, and a version is only ever loaded again through load(), so never from a
broken state.

A version loads as TF Serving loads it: the SavedModel's graph in a Session, each signature run
by its tensor names, and every call runs its ops in the calling thread, one core each (see
load()). One ad costs ~1.5 ms that way against ~3.3 ms through the TF2 signature functions.
"""
import dataclasses
import io
from typing import Any, Callable, Dict, Iterable, Optional, Set

import numpy as np
from PIL import Image
import tensorflow as tf

from models import features
from models import storage

# TF's DataTypeString names, which TF Serving's messages use (DT_FLOAT is "float").
_DTYPE_NAMES = {'float32': 'float', 'float64': 'double'}

# Session.run in the caller's thread instead of the session's inter-op pool.
_RUN_OPTIONS = tf.compat.v1.RunOptions(inter_op_thread_pool=-1)

Snapshot = storage.Listing  # (relative path, size, mtime) of every file


Arrays = Dict[str, np.ndarray]


@dataclasses.dataclass
class LoadedModel:
  version: int
  path: str
  signature_defs: Dict[str, Any]  # name -> SignatureDef proto, for metadata
  signatures: Dict[str, Callable[..., Arrays]]  # name -> run(**inputs) -> outputs
  inputs: Dict[str, Dict[str, str]]  # signature -> input name -> dtype name
  session: Any  # tf.compat.v1.Session holding the graph and variables
  files: Snapshot  # the version's files when it was checked whole and loaded


def snapshot(version_dir: str) -> Optional[Snapshot]:
  """Every file of a version, or None while its listing shows that it is not whole."""
  found = storage.quick_check(version_dir)
  return found.listing if found.whole else None


def load(path: str, version: int, files: Optional[Snapshot] = None) -> LoadedModel:
  """Checks that a version is whole (storage.check; `files`: the poller's previous snapshot),
  loads it and runs one request through every signature that takes raw fields."""
  found = storage.check(path, previous=files)
  if not found.whole:
    raise tf.errors.DataLossError(None, None, f'Version {version} at {path} is not whole: '
                                  f'{found.problem}; not loaded')
  graph = tf.Graph()
  # Calls run their ops in the calling thread (_RUN_OPTIONS) on one core: the graph is small
  # and mostly sequential, so handing ops to TF's thread pools costs more than it gains (a
  # context switch per call, and idle pool threads spinning on the cores the event loop and
  # the other batch need). Parallelism comes from running batches side by side (batching.py).
  config = tf.compat.v1.ConfigProto(inter_op_parallelism_threads=1,
                                    intra_op_parallelism_threads=1)
  config.experimental.disable_thread_spinning = True
  session = tf.compat.v1.Session(graph=graph, config=config)
  with graph.as_default():
    meta_graph = tf.compat.v1.saved_model.load(session, [tf.saved_model.SERVING], path)
  signature_defs = dict(meta_graph.signature_def)
  runnable = {name: d for name, d in signature_defs.items() if d.inputs and d.outputs}
  model = LoadedModel(
      version, path, signature_defs,
      {name: _runner(session, d) for name, d in runnable.items()},
      {name: {k: dtype_name(info.dtype) for k, info in d.inputs.items()}
       for name, d in runnable.items()},
      session, found.listing)
  warmup = warmup_inputs()
  for name, run in model.signatures.items():
    if set(model.inputs[name]) == set(warmup):
      run(**warmup)
  return model


def _runner(session, signature) -> Callable[..., Arrays]:
  """One Session.run per call, feeding and fetching the signature's tensors by name."""
  input_keys, output_keys = sorted(signature.inputs), sorted(signature.outputs)
  run = session.make_callable([signature.outputs[k].name for k in output_keys],
                              [signature.inputs[k].name for k in input_keys],
                              accept_options=True)

  def call(**inputs: np.ndarray) -> Arrays:
    try:
      return dict(zip(output_keys, run(*[inputs[k] for k in input_keys], options=_RUN_OPTIONS)))
    except Exception as e:
      # TF raises a copy of the error it caught (session.py's _do_call), chained to it; the
      # caught one's traceback holds the feeds, and its frames the caller's: a reference
      # cycle that kept every failed request's inputs and body until a full collection.
      e.__cause__ = e.__context__ = None
      raise

  return call


def sample_ad() -> Dict[str, Any]:
  """One synthetic ad from features.py: domain values, defaults, range minimums, a tiny PNG."""
  return {f.name: _sample_value(f) for f in features.serving_features()}


def _sample_value(feature: features.Feature) -> Any:
  if feature.role == features.IMAGE:
    png = io.BytesIO()
    Image.new('RGB', (8, 8), (90, 120, 200)).save(png, format='PNG')
    return png.getvalue()
  if feature.domain:
    return feature.domain[0]
  if feature.default is not None:
    return feature.default
  if feature.value_range:
    return feature.value_range[0]
  return feature.name


def warmup_inputs() -> Dict[str, np.ndarray]:
  """sample_ad() as the raw serving signature takes it: one [1] array per field."""
  ad = sample_ad()
  return {f.name: np.array([ad[f.name].encode() if isinstance(ad[f.name], str) else ad[f.name]],
                           dtype=features.tf_dtype(f).as_numpy_dtype)
          for f in features.serving_features()}


def dtype_name(dtype) -> str:
  """TF's DataTypeString of a tf.DType or DataType enum: the name TF Serving's messages use."""
  name = tf.dtypes.as_dtype(dtype).name
  return _DTYPE_NAMES.get(name, name)


def aspired(policy, candidates: Iterable[int]) -> Set[int]:
  """The versions a ServableVersionPolicy (of serving/model_config.py) serves out of those that
  can be loaded, as TF Serving's FileSystemStoragePathSource picks them: `latest` (the default,
  newest num_versions, at least 1), `specific` (the listed ones), `all`."""
  candidates = set(candidates)
  kind = policy.WhichOneof('policy_choice')
  if kind == 'all':
    return candidates
  if kind == 'specific':
    return candidates & set(policy.specific.versions)
  count = max(policy.latest.num_versions, 1) if kind == 'latest' else 1
  return set(sorted(candidates)[-count:])
