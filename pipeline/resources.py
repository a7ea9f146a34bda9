"""CPU and memory of each Kubeflow task's pod, by kind of task (kubeflow_runner.py applies it).

  trainer  Trainer and Tuner: TensorFlow training, images included
  beam     Beam components (ExampleGen, StatisticsGen, DataGate, Transform, Evaluator): on
           the DirectRunner they run one worker process per requested CPU, each loading
           TensorFlow
  default  every other task (schema import, validation, baseline copy, push)

Change a value with `--set resources.trainer_memory_limit_gib=24` (either runner; the local
runner ignores it) or a `--config` file. CPU in cores, memory in GiB; a limit is the most the
pod may use (memory beyond it kills the pod), a request what the scheduler reserves.
"""
import dataclasses

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
