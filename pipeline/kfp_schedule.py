"""Uploads a compiled pipeline spec to Kubeflow Pipelines and runs it on a schedule, idempotently
(monthly by default: training; batch scoring and the monitoring check pass their own cron).

Everything is looked up by name before anything is created, so running this again changes
nothing unless the spec changed:
* the pipeline (by display name), created on the first upload;
* the pipeline version, named `<pipeline>-<sha256 of the spec, 12 hex digits>`, uploaded
  only for a new spec;
* the experiment (kfp.Client.create_experiment returns an existing one by name);
* the recurring run (by display name, in that experiment): kept when it already runs this
  version on this schedule, else replaced (KFP cannot update a recurring run in place), so
  there is only ever one.
"""
import dataclasses
import hashlib
import json

import kfp

# The KFP backend parses cron with six fields, seconds first: 00:00:00 on the 1st of each
# month. (A five-field `0 0 1 * *` would mean 00:01:00 every day.)
MONTHLY_CRON = '0 0 0 1 * *'
MAX_CONCURRENCY = 1  # a month's run never overlaps the previous one
_PAGE_SIZE = 100


@dataclasses.dataclass
class Schedule:
  pipeline_id: str
  version_id: str
  version_name: str
  experiment_id: str
  recurring_run_id: str
  created: bool  # False: an identical schedule already existed


def _by_name(name: str) -> str:
  return json.dumps({'predicates': [
      {'operation': 'EQUALS', 'key': 'display_name', 'stringValue': name}]})


def version_name(pipeline_name: str, package_path: str) -> str:
  with open(package_path, 'rb') as f:
    return f'{pipeline_name}-{hashlib.sha256(f.read()).hexdigest()[:12]}'


def _pipeline_version(client: kfp.Client, package_path: str, pipeline_name: str):
  """(pipeline id, version) for this spec, uploading only what is missing."""
  pipeline_id = client.get_pipeline_id(pipeline_name)
  if pipeline_id is None:
    # KFP stores the upload as the pipeline's first version, named after the pipeline.
    pipeline_id = client.upload_pipeline(package_path, pipeline_name=pipeline_name).pipeline_id
  name = version_name(pipeline_name, package_path)
  found = client.list_pipeline_versions(pipeline_id, page_size=_PAGE_SIZE,
                                        filter=_by_name(name)).pipeline_versions
  if found:
    return pipeline_id, found[0]
  return pipeline_id, client.upload_pipeline_version(package_path, name,
                                                     pipeline_id=pipeline_id)


def _is_current(run, version_id: str, cron: str) -> bool:
  return (run.pipeline_version_reference is not None and
          run.pipeline_version_reference.pipeline_version_id == version_id and
          run.trigger is not None and run.trigger.cron_schedule is not None and
          run.trigger.cron_schedule.cron == cron and bool(run.no_catchup) and
          int(run.max_concurrency or 0) == MAX_CONCURRENCY)


def schedule(client: kfp.Client, package_path: str, pipeline_name: str,
                     experiment_name: str, recurring_run_name: str,
                     cron: str = MONTHLY_CRON) -> Schedule:
  """Makes sure exactly one recurring run named recurring_run_name runs this spec on cron."""
  pipeline_id, version = _pipeline_version(client, package_path, pipeline_name)
  experiment_id = client.create_experiment(experiment_name).experiment_id
  existing = client.list_recurring_runs(
      experiment_id=experiment_id, page_size=_PAGE_SIZE,
      filter=_by_name(recurring_run_name)).recurring_runs or []
  keep = next((r for r in existing if _is_current(r, version.pipeline_version_id, cron)), None)
  for run in existing:
    if run is not keep:
      client.delete_recurring_run(run.recurring_run_id)
  created = keep is None
  if created:
    keep = client.create_recurring_run(
        experiment_id=experiment_id, job_name=recurring_run_name,
        description=f'{pipeline_name} on the latest month of data, cron {cron}',
        cron_expression=cron, max_concurrency=MAX_CONCURRENCY, no_catchup=True,
        pipeline_id=pipeline_id, version_id=version.pipeline_version_id, enabled=True)
  return Schedule(pipeline_id=pipeline_id, version_id=version.pipeline_version_id,
                  version_name=version.display_name, experiment_id=experiment_id,
                  recurring_run_id=keep.recurring_run_id, created=created)
