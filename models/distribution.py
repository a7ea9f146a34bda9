"""Which tf.distribute strategy the Trainer trains under, which replica is the chief, and where
the others write.

The cluster is read from TF_CONFIG, which Vertex AI Training (worker pool 0 the chief, pool 1
the workers) and Kubeflow's TFJob operator set on every replica they start:

  no TF_CONFIG, or a cluster of one task   the default strategy: one process, as the local
                                           runner trains.
  chief and/or workers                     MultiWorkerMirroredStrategy: every replica holds the
                                           whole model, trains on its share of the input and
                                           all-reduces the gradients (and Keras' metrics) each
                                           step.
  a parameter server (ps) in the cluster   refused (ValueError). ParameterServerStrategy would
                                           need what this Trainer does not have: run_fn would
                                           have to start a server and block on the worker and
                                           ps replicas instead of training; Keras' fit then
                                           needs steps_per_epoch, so an epoch could no longer be
                                           a pass over a small month (trainer.steps_per_epoch);
                                           the input must come from a DatasetCreator built on
                                           each worker; and the model's variables would be
                                           sharded over the servers. The model is small (its
                                           variables fit every worker), so PS buys nothing here.

TFX's GenericExecutor calls run_fn on every replica. Every replica must also save the model
(saving reads Keras' metric variables, which all-reduces across the replicas: a replica that
skipped it would leave the others waiting), but only the chief writes to the Model artifact:
the others save into a temporary directory and delete it (`output_dir`).

Not handled: one replica with several GPUs (Vertex `vertex.accelerator_count` > 1 and no
workers) trains under the default strategy on one of them; MirroredStrategy would use all, but
no GPU machine was at hand to check it.
"""
import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
from typing import Dict, Iterator, List, Optional

TF_CONFIG = 'TF_CONFIG'
CHIEF, WORKER, PS = 'chief', 'worker', 'ps'


@dataclasses.dataclass(frozen=True)
class Cluster:
  """The cluster of TF_CONFIG and this process's task in it."""
  tasks: Dict[str, List[str]]  # task type -> addresses
  task_type: str
  task_index: int

  def is_chief(self) -> bool:
    """The chief task, or worker 0 where the cluster has no chief (TensorFlow's rule)."""
    if CHIEF in self.tasks:
      return self.task_type == CHIEF
    return self.task_type == WORKER and self.task_index == 0

  def replicas(self) -> int:
    """The replicas that train: the chief and the workers."""
    return len(self.tasks.get(CHIEF, [])) + len(self.tasks.get(WORKER, []))


def cluster() -> Optional[Cluster]:
  """TF_CONFIG's cluster, or None where there is none or it has a single task."""
  config = json.loads(os.environ.get(TF_CONFIG) or '{}')
  tasks = config.get('cluster') or {}
  if sum(len(addresses) for addresses in tasks.values()) <= 1:
    return None
  task = config.get('task') or {}
  return Cluster(tasks, task.get('type', WORKER), int(task.get('index', 0)))


def strategy():
  """The strategy for this process's TF_CONFIG (see the module docstring). Call it before
  anything else runs TensorFlow ops: MultiWorkerMirroredStrategy configures the collective
  ops of the process, which TensorFlow allows only before it starts its runtime."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  found = cluster()
  if found is None:
    return tf.distribute.get_strategy()
  unsupported = set(found.tasks) - {CHIEF, WORKER}
  if unsupported:
    raise ValueError(
        f'TF_CONFIG has {sorted(unsupported)} tasks; the Trainer trains with '
        'MultiWorkerMirroredStrategy (chief and workers only): see models/distribution.py '
        'for why not ParameterServerStrategy.')
  return tf.distribute.MultiWorkerMirroredStrategy()


def replicas() -> int:
  """The replicas that train (1 without a cluster)."""
  found = cluster()
  return 1 if found is None else found.replicas()


def is_chief() -> bool:
  """Whether this process writes the outputs (always, without a cluster)."""
  found = cluster()
  return found is None or found.is_chief()


@contextlib.contextmanager
def output_dir(path: str) -> Iterator[str]:
  """`path` on the chief; elsewhere a temporary directory, deleted on the way out."""
  if is_chief():
    yield path
    return
  scratch = tempfile.mkdtemp(prefix='non-chief-')
  try:
    yield os.path.join(scratch, os.path.basename(path))
  finally:
    shutil.rmtree(scratch, ignore_errors=True)
