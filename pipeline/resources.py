"""Where the Kubeflow tasks run and how big: pod sizes, and Dataflow's workers with --dataflow.

ResourcesConfig (PipelineConfig.resources): CPU and memory of each task's pod, by kind of task
(kubeflow_runner.py applies it):

  trainer  Trainer and Tuner: TensorFlow training, images included
  beam     Beam components (ExampleGen, StatisticsGen, DataGate, Transform, Evaluator): on
           the DirectRunner they run one worker process per requested CPU, each loading
           TensorFlow
  default  every other task (schema import, validation, baseline copy, push)

Change a value with `--set resources.trainer_memory_limit_gib=24` (either runner; the local
runner ignores it) or a `--config` file. CPU in cores, memory in GiB; a limit is the most the
pod may use (memory beyond it kills the pod), a request what the scheduler reserves.

DataflowConfig (PipelineConfig.dataflow): the Dataflow workers of the Beam steps when a spec
is compiled with --dataflow (pipeline/kfp_options.py turns it into Beam flags), e.g.
`--set dataflow.max_num_workers=40 --set dataflow.subnetwork=regions/R/subnetworks/S
--set dataflow.use_public_ips=false`.

VertexConfig (PipelineConfig.vertex): the Vertex AI Training job the Trainer (and Tuner) run
as when a spec is compiled with --vertex, e.g. `--set vertex.workers=3
--set vertex.accelerator_type=NVIDIA_TESLA_T4 --set vertex.accelerator_count=1`.
"""
import dataclasses
from typing import List, Optional

KINDS = ('trainer', 'beam', 'default')


@dataclasses.dataclass(frozen=True)
class PodSize:
  cpu_request: float
  cpu_limit: float
  memory_request_gib: float
  memory_limit_gib: float


@dataclasses.dataclass(frozen=True)
class ResourcesConfig:
  trainer_cpu_request: float = 4.0
  trainer_cpu_limit: float = 4.0
  trainer_memory_request_gib: float = 8.0
  trainer_memory_limit_gib: float = 16.0
  # Four workers, each with TensorFlow loaded (about 1 GiB) and its share of the data.
  beam_cpu_request: float = 4.0
  beam_cpu_limit: float = 4.0
  beam_memory_request_gib: float = 8.0
  beam_memory_limit_gib: float = 12.0
  default_cpu_request: float = 1.0
  default_cpu_limit: float = 1.0
  default_memory_request_gib: float = 2.0
  default_memory_limit_gib: float = 4.0

  def __post_init__(self):
    for kind in KINDS:
      size = self.pod(kind)
      for request, limit in ((size.cpu_request, size.cpu_limit),
                             (size.memory_request_gib, size.memory_limit_gib)):
        if not 0 < request <= limit:
          raise ValueError(f'resources.{kind}_*: a request must be > 0 and <= its limit; '
                           f'got {size}')

  def pod(self, kind: str) -> PodSize:
    return PodSize(**{field.name: getattr(self, f'{kind}_{field.name}')
                      for field in dataclasses.fields(PodSize)})

  def beam_workers(self) -> int:
    """DirectRunner worker processes of a Beam task: one per requested CPU (at least one)."""
    return max(1, int(self.beam_cpu_request))


@dataclasses.dataclass(frozen=True)
class DataflowConfig:
  """The Dataflow job of each Beam step (ExampleGen, StatisticsGen, DataGate, Transform,
  Evaluator, batch scoring); the project, region and image are the compiler's flags."""
  max_num_workers: int = 20  # autoscaling's ceiling, which bounds a month's cost
  machine_type: str = 'n1-standard-4'
  # Transform holds its analyzers' state (vocabularies, quantiles) and decoded images, the
  # Evaluator a model per worker and the jackknife's per-slice combiners: both need more
  # memory per core than the steps that only read and count.
  transform_machine_type: str = 'n1-highmem-8'
  evaluator_machine_type: str = 'n1-highmem-8'
  disk_size_gb: int = 50  # per worker: the shuffle of images and the container image
  # Who the workers run as (None: the project's Compute Engine default service account).
  service_account_email: Optional[str] = None
  # The workers' subnetwork, `regions/REGION/subnetworks/NAME` or its full URL (None: the
  # project's default network); with use_public_ips=false the subnetwork needs Private
  # Google Access for the workers to reach GCS and the image registry.
  subnetwork: Optional[str] = None
  use_public_ips: bool = True

  def __post_init__(self):
    for name in ('max_num_workers', 'disk_size_gb'):
      if getattr(self, name) < 1:
        raise ValueError(f'dataflow.{name} must be >= 1; got {getattr(self, name)}')

  def machine_type_of(self, component_id: str) -> str:
    """The worker machine type of the Beam step with this node id."""
    return {'Transform': self.transform_machine_type,
            'Evaluator': self.evaluator_machine_type}.get(component_id, self.machine_type)

  def beam_args(self) -> List[str]:
    """The Beam flags every step shares (the step's machine type is its own: machine_type_of)."""
    args = [f'--max_num_workers={self.max_num_workers}', f'--disk_size_gb={self.disk_size_gb}']
    if self.service_account_email:
      args.append(f'--service_account_email={self.service_account_email}')
    if self.subnetwork:
      args.append(f'--subnetwork={self.subnetwork}')
    if not self.use_public_ips:
      args.append('--no_use_public_ips')
    return args


@dataclasses.dataclass(frozen=True)
class VertexConfig:
  """Worker pools of the Vertex AI Training job (CustomJob) of the Trainer: pool 0 the chief,
  pool 1 `workers` more replicas of the same machine. Vertex sets TF_CONFIG on each, from
  which run_fn picks its tf.distribute strategy (models/trainer.py)."""
  machine_type: str = 'n1-standard-8'
  workers: int = 0  # 0: the chief trains alone
  accelerator_type: Optional[str] = None  # per replica, e.g. NVIDIA_TESLA_T4 (None: CPU only)
  accelerator_count: int = 1  # of accelerator_type, per replica

  def __post_init__(self):
    for name, least in (('workers', 0), ('accelerator_count', 1)):
      if getattr(self, name) < least:
        raise ValueError(f'vertex.{name} must be >= {least}; got {getattr(self, name)}')

  def worker_pool_specs(self, image: str) -> List[dict]:
    """The job's worker_pool_specs: every replica runs the TFX executor in `image`."""
    return [self._pool(image, 1)] + ([self._pool(image, self.workers)] if self.workers else [])

  def _pool(self, image: str, replicas: int) -> dict:
    machine = {'machine_type': self.machine_type}
    if self.accelerator_type:
      machine.update(accelerator_type=self.accelerator_type,
                     accelerator_count=self.accelerator_count)
    return {'machine_spec': machine, 'replica_count': replicas,
            'container_spec': {'image_uri': image}}
