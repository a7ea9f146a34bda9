"""Runs a compiled KFP v2 pipeline spec on this machine, task by task, the way KFP runs it.

Modelled on the open-source KFP 2.x backend (kubeflow/pipelines backend/src/v2 at 2.2.0:
driver/driver.go resolveInputs and provisionOutputs, component/launcher_v2.go,
metadata/converter.go), for each task of the root DAG in dependency order:
* inputs: the task's constant parameters, and its input artifacts as the metadata store hands
  them back: named by their metadata id, typed by the producer's schema, their metadata
  converted as KFP stores it (numbers to doubles, bools to ints, lists and structs wrapped as
  {"list": ...} / {"struct": ...}; all numbers read back as doubles) plus a display_name;
* outputs: URIs <pipeline root>/<pipeline name>/<run id>/<task>/<output key>, and the
  executor's output metadata file;
* the container's own command and args with the ExecutorInput JSON in place of `{{$}}`, run
  from a copy of the repository as the image's `COPY . .` makes it (conftest.copy_repository)
  with the image's environment (PYTHONPATH=the copy);
* the executor's output artifacts (URI and metadata) merged into the provisioned ones and
  recorded; the first failing task ends the run (Argo's fail-fast DAG).
Not modelled (the launcher refuses a spec that needs it): importer and resolver executors,
pipeline-level inputs, output parameters, conditions and loops. Not done at all: caching,
upload/download of artifacts to object storage (roots are local paths), pods and images.
"""
import dataclasses
import itertools
import json
import os
import subprocess
import sys
from typing import Any, Collection, Dict, List, Optional

from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

PLACEHOLDER = '{{$}}'
# What the pipeline image sets (Dockerfile ENV).
IMAGE_ENV = {'TF_USE_LEGACY_KERAS': '1', 'TF_CPP_MIN_LOG_LEVEL': '1'}


def _stored(value: Any) -> Any:
  """An output metadata value as the KFP metadata store hands it to the next task."""
  if isinstance(value, (bool, int, float)):
    return float(value)  # bools are stored as ints, numbers as doubles; both read back as numbers
  if isinstance(value, str):
    return value
  if isinstance(value, list):
    return {'list': value}
  if isinstance(value, dict):
    return {'struct': value}
  raise ValueError(f'KFP cannot store metadata value {value!r}')


@dataclasses.dataclass
class TaskResult:
  name: str
  returncode: int
  log: str  # the file holding the task's stdout and stderr
  executor_input: Dict[str, Any]
  outputs: Dict[str, Dict[str, Any]]  # output key -> the recorded RuntimeArtifact (JSON)


@dataclasses.dataclass
class RunResult:
  run_id: str
  tasks: Dict[str, TaskResult]  # in the order they ran
  failed: Optional[str]  # the task that failed, if any

  def artifact(self, task: str, key: str) -> Dict[str, Any]:
    return self.tasks[task].outputs[key]


class LocalLauncher:
  """Runs specs against one metadata store (artifact ids go on across runs, as in MLMD)."""

  def __init__(self, repo_copy: str, work_dir: str):
    self.repo_copy = repo_copy
    self.work_dir = work_dir
    self._artifact_ids = itertools.count(1)
    self._runs = 0

  def _record(self, artifact: Dict[str, Any], output_key: str) -> Dict[str, Any]:
    metadata = {k: _stored(v) for k, v in artifact.get('metadata', {}).items()}
    metadata.setdefault('display_name', output_key)
    return {'name': str(next(self._artifact_ids)), 'uri': artifact['uri'],
            'type': {'instanceSchema': artifact['type'].get('instanceSchema', '')},
            'metadata': metadata}

  def run(self, spec: Dict[str, Any], only: Optional[Collection[str]] = None) -> RunResult:
    """Runs the spec's tasks; with `only`, just those and the tasks they depend on (a test
    that has seen the rest run once need not wait for them again; KFP runs them all)."""
    self._runs += 1
    run_id = f'run-{self._runs}'
    root = spec['defaultPipelineRoot'].rstrip('/')
    run_root = f"{root}/{spec['pipelineInfo']['name']}/{run_id}"
    tasks = spec['root']['dag']['tasks']
    if only is not None:
      tasks = {name: tasks[name] for name in with_upstream(tasks, only)}
    results: Dict[str, TaskResult] = {}
    for name in _dependency_order(tasks):
      result = self._run_task(spec, name, tasks[name], run_root, run_id, results)
      results[name] = result
      if result.returncode != 0:
        return RunResult(run_id, results, failed=name)
    return RunResult(run_id, results, failed=None)

  def _run_task(self, spec, name, task, run_root, run_id, done) -> TaskResult:
    component = spec['components'][task['componentRef']['name']]
    executor = spec['deploymentSpec']['executors'][component['executorLabel']]
    if 'container' not in executor:
      raise NotImplementedError(f'{name}: {sorted(executor)} executors are not modelled')
    unsupported = {'triggerPolicy', 'iteratorPolicy', 'parameterIterator',
                   'artifactIterator'} & set(task)
    if component.get('outputDefinitions', {}).get('parameters'):
      unsupported.add('output parameters')
    if unsupported:
      raise NotImplementedError(f'{name}: not modelled: {sorted(unsupported)}')
    task_dir = os.path.join(self.work_dir, run_id, name)
    executor_input = {
        'inputs': {'parameterValues': _parameters(name, task, component),
                   'artifacts': _input_artifacts(name, task, done)},
        'outputs': {
            'artifacts': {
                key: {'artifacts': [{'uri': f'{run_root}/{name}/{key}',
                                     'type': output['artifactType'],
                                     **({'metadata': output['metadata']}
                                        if 'metadata' in output else {})}]}
                for key, output in component.get('outputDefinitions', {}).get(
                    'artifacts', {}).items()},
            'outputFile': os.path.join(task_dir, 'kfp_outputs', 'output_metadata.json')}}
    # Checked against the proto, and serialized as the launcher's protojson does.
    invocation = json_format.MessageToJson(
        json_format.ParseDict(executor_input, pipeline_spec_pb2.ExecutorInput()), indent=None)
    container = executor['container']
    argv = [arg.replace(PLACEHOLDER, invocation)
            for arg in container.get('command', []) + container.get('args', [])]
    left = [arg for arg in argv if '{{$' in arg]
    if left:
      raise NotImplementedError(f'{name}: placeholders this launcher does not fill: {left}')
    os.makedirs(task_dir, exist_ok=True)
    with open(os.path.join(task_dir, 'executor_input.json'), 'w') as f:
      f.write(invocation)  # to rerun a task by hand
    env = dict(os.environ, **IMAGE_ENV, PYTHONPATH=self.repo_copy,
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ['PATH'])
    log_path = os.path.join(task_dir, 'log.txt')
    with open(log_path, 'w') as log:
      returncode = subprocess.run(argv, cwd=self.repo_copy, env=env, stdout=log,
                                  stderr=subprocess.STDOUT, check=False).returncode
    outputs = {}
    if returncode == 0:
      outputs = self._collect_outputs(executor_input['outputs'])
    return TaskResult(name, returncode, log_path, executor_input, outputs)

  def _collect_outputs(self, provisioned) -> Dict[str, Dict[str, Any]]:
    written = {}
    if os.path.exists(provisioned['outputFile']):
      with open(provisioned['outputFile']) as f:
        written = json.load(f).get('artifacts', {})
    recorded = {}
    for key, artifacts in provisioned['artifacts'].items():
      artifact = dict(artifacts['artifacts'][0])
      mine = written.get(key, {}).get('artifacts', [])
      if mine:  # launcher_v2 mergeRuntimeArtifacts: the executor's URI and metadata win
        artifact['uri'] = mine[0].get('uri') or artifact['uri']
        artifact['metadata'] = {**artifact.get('metadata', {}), **mine[0].get('metadata', {})}
      recorded[key] = self._record(artifact, key)
    return recorded


def _dependency_order(tasks: Dict[str, Any]) -> List[str]:
  """Every task after the tasks it depends on; ties in name order (KFP runs them in parallel)."""
  order, waiting = [], {name: set(task.get('dependentTasks', [])) for name, task in tasks.items()}
  while waiting:
    ready = sorted(name for name, needs in waiting.items() if needs <= set(order))
    if not ready:
      raise ValueError(f'dependency cycle among {sorted(waiting)}')
    order.append(ready[0])
    del waiting[ready[0]]
  return order


def with_upstream(tasks: Dict[str, Any], names: Collection[str]) -> set:
  """The named tasks and every task they depend on, directly or not."""
  found, waiting = set(), list(names)
  while waiting:
    name = waiting.pop()
    if name not in found:
      found.add(name)
      waiting += tasks[name].get('dependentTasks', [])
  return found


def _parameters(name, task, component) -> Dict[str, Any]:
  values = {}
  for key, spec in task.get('inputs', {}).get('parameters', {}).items():
    if 'runtimeValue' not in spec or 'constant' not in spec['runtimeValue']:
      raise NotImplementedError(f'{name}.{key}: only constant parameters are modelled: {spec}')
    values[key] = spec['runtimeValue']['constant']
  expected = component.get('inputDefinitions', {}).get('parameters', {})
  for key, definition in expected.items():
    if key not in values and not definition.get('isOptional') and (
        'defaultValue' not in definition):
      raise ValueError(f'{name}: no value for non-optional parameter {key}')  # as the driver
  return values


def _input_artifacts(name, task, done: Dict[str, TaskResult]) -> Dict[str, Any]:
  artifacts = {}
  for key, spec in task.get('inputs', {}).get('artifacts', {}).items():
    if 'taskOutputArtifact' not in spec:
      raise NotImplementedError(f'{name}.{key}: only task output artifacts are modelled')
    producer = spec['taskOutputArtifact']['producerTask']
    artifacts[key] = {'artifacts': [
        done[producer].outputs[spec['taskOutputArtifact']['outputArtifactKey']]]}
  return artifacts
