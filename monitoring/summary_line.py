"""The monthly run summary's line on the served model: how it did on the new month, against
what it promised when it was pushed.

The run's Evaluator already scored the served model (its baseline) on the new month's eval
split; what that model promised is its own evaluation, found through MLMD from its version.
"""
from typing import Optional

from components import evaluation_results
from monitoring import lineage as lineage_lib
from monitoring import quality
from monitoring.measures import Thresholds



def served_on_new_month(connection_config, evaluation_uri: str,
                        served_version: Optional[int],
                        thresholds: Thresholds = Thresholds()) -> str:
  """One line: the served model on the new month, observed vs promised, and any decay.

  Args:
    connection_config: The MLMD store the runs were recorded in.
    evaluation_uri: This run's ModelEvaluation.
    served_version: The version ServedModelBaseline found (None when nothing was served).
  """
  if served_version is None:
    return 'Served model on the new month: none is served yet.'
  results = evaluation_results.Results(evaluation_uri)
  observed = results.overall(results.baseline)
  served = lineage_lib.Lineage(connection_config).served(str(served_version))
  promised = quality.promised(served.evaluation_uri) if served and served.evaluation_uri else None
  if observed is None:
    return f'Served model (version {served_version}) on the new month: not evaluated.'
  if promised is None:
    auc, logloss, calibration = (observed[name] for name in (
        evaluation_results.AUC, evaluation_results.LOGLOSS, evaluation_results.CALIBRATION))
    return (f'Served model (version {served_version}) on the new month: AUC {auc:.4f}, '
            f'log-loss {logloss:.4f}, calibration {calibration:.3f}; what it promised is not '
            'in this metadata store.')
  measures = quality.decay(observed, promised, thresholds)
  broken = [m.name for m in measures if m.broken]
  figures = ', '.join(f'{m.name} {m.value:.4f} (promised {m.reference:.4f})' for m in measures)
  verdict = f'DECAYED: {", ".join(broken)} beyond the thresholds' if broken else 'no decay'
  return (f'Served model (version {served_version}) on the new month\'s eval split: '
          f'{figures}; {verdict}.')
