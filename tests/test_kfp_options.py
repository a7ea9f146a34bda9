"""pipeline/kfp_options.py: the KFP flags the three spec compilers share, as each parses them."""
import pytest

import kubeflow_runner
from batch import kfp_batch
from monitoring import kfp_monitor
from pipeline import kfp_options
from pipeline.resources import DataflowConfig


def _refused(compiler, argv, capsys):
  with pytest.raises(SystemExit) as exit_info:
    compiler.parse_args(argv)
  assert exit_info.value.code == 2
  return capsys.readouterr().err


@pytest.mark.parametrize('compiler', [kubeflow_runner, kfp_batch, kfp_monitor])
def test_schedule_needs_host(compiler, capsys):
  assert 'error: --schedule needs --host' in _refused(compiler, ['--schedule'], capsys)
  assert compiler.parse_args(['--schedule', '--host', 'http://kfp:8888']).host == (
      'http://kfp:8888')


@pytest.mark.parametrize('compiler', [kubeflow_runner, kfp_batch])
def test_dataflow_needs_project(compiler, capsys):
  assert 'error: --dataflow needs --project' in _refused(compiler, ['--dataflow'], capsys)
  assert compiler.parse_args(['--dataflow', '--project', 'p']).project == 'p'


def test_the_monitoring_check_takes_no_dataflow_flags(capsys):
  assert 'unrecognized arguments: --dataflow' in _refused(kfp_monitor, ['--dataflow'], capsys)


def test_each_root_defaults_below_gcs_root_unless_set_on_its_own():
  args = kubeflow_runner.parse_args(['--gcs-root', 'gs://b/r', '--data-root', 'gs://d/in'])
  assert (args.pipeline_root, args.data_root, args.serving_root) == (
      'gs://b/r/pipeline-root', 'gs://d/in', 'gs://b/r/serving')
  args = kfp_batch.parse_args(['--gcs-root', 'gs://b/r', '--scores-root', 'gs://s/out'])
  assert (args.data_root, args.scores_root, args.serving_root) == (
      'gs://b/r/data', 'gs://s/out', 'gs://b/r/serving')
  assert not hasattr(args, 'pipeline_root')  # only the roots a compiler has a flag for


def test_without_dataflow_the_beam_steps_stay_in_their_container():
  args = kubeflow_runner.parse_args([])
  assert kfp_options.beam_pipeline_args(args, DataflowConfig(use_public_ips=False)) == [
      '--direct_running_mode=multi_processing']


def test_every_compiler_gets_the_dataflow_workers_of_the_config():
  """The batch compiler passes no config: it gets the defaults, at the default machine type."""
  args = kfp_batch.parse_args(['--dataflow', '--project', 'p'])
  flags = kfp_options.beam_pipeline_args(args)
  default = DataflowConfig()
  assert f'--machine_type={default.machine_type}' in flags
  assert f'--max_num_workers={default.max_num_workers}' in flags
  assert not [f for f in flags if f.startswith(('--subnetwork', '--service_account_email',
                                                '--no_use_public_ips'))]
  private = DataflowConfig(subnetwork='regions/r/subnetworks/s', use_public_ips=False)
  assert {'--subnetwork=regions/r/subnetworks/s', '--no_use_public_ips'} <= set(
      kfp_options.beam_pipeline_args(args, private))


@pytest.mark.parametrize('field', ['max_num_workers', 'disk_size_gb'])
def test_dataflow_sizes_must_be_positive(field):
  with pytest.raises(ValueError, match=field):
    DataflowConfig(**{field: 0})
