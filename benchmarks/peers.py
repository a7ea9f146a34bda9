"""The plain peers a benchmark holds the model against, and the figures it reports for any
scorer: one home for benchmarks/model_bench.py (the generated sample) and
benchmarks/real_logs.py (the real logs of issue 22), both reading the fields of
models/features.py when called (a copy of the repository with another log's fields gets that
log's peers).

  - a tuned logistic regression: one-hot categorical and integer fields (values seen fewer
    than MIN_FREQUENCY times share one infrequent column, which unseen values join), numeric
    fields as the model sees them (sign(x) * log1p(|x|) where features.py says log_scale)
    with a missing indicator each and z-scored; its inverse L2 strength C chosen from C_GRID
    by log-loss on a validation part of the training rows (the latest VALIDATION_SHARE by
    the TIME field where there is one, else a seeded random share), then refitted on all;
  - a gradient-boosted tree (HistGradientBoostingClassifier, early-stopped on a random
    tenth): categorical fields ordinal-encoded, values seen fewer than MIN_FREQUENCY times
    and those beyond the MAX_CATEGORIES most frequent sharing one code (its native
    categorical splits take at most 255), unseen values missing; numbers as they are,
    missing ones sent down the better branch.
"""
import glob
import os
from typing import Dict, List, Sequence

import numpy as np
import pandas as pd
import tensorflow as tf
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, PredefinedSplit
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, OrdinalEncoder
from sklearn.preprocessing import StandardScaler

from components import evaluation_results
from models import features

LOGISTIC = 'logistic regression'  # tuned: C chosen on a validation part
GBDT = 'gradient-boosted tree'
MIN_FREQUENCY = 5  # rows a value needs for a column (LR) or a code (GBDT) of its own
MAX_CATEGORIES = 250  # codes per categorical field in the GBDT, the infrequent one included
C_GRID = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
VALIDATION_SHARE = 0.1
SEED = 0


def tabular_features() -> List[features.Feature]:
  return list(features.with_role(features.CATEGORICAL, features.INTEGER, features.NUMERIC))


def read_examples(examples_uri: str, split_names: Sequence[str]) -> pd.DataFrame:
  """The tabular fields, label, cohort key and time of some splits of an Examples artifact:
  the rows a run trained on, for the peers to learn from the same rows."""
  files = [path for split in split_names
           for path in sorted(glob.glob(os.path.join(examples_uri, f'Split-{split}', '*')))]
  return examples_frame(tf.data.TFRecordDataset(files, compression_type='GZIP'))


def examples_frame(serialized) -> pd.DataFrame:
  """The tabular fields, label, cohort key and time of serialized tf.Examples (a dataset or
  a list), as the peers read them: the same decoding for the rows they learn from and the
  rows they score (missing values as the row rules filled them in)."""
  wanted = [f for f in tabular_features() + [features.label_feature(),
                                             features.cohort_key_feature(),
                                             features.time_feature()] if f]
  spec = {f.name: tf.io.FixedLenFeature([], features.tf_dtype(f)) for f in wanted}
  columns = {f.name: [] for f in wanted}
  dataset = serialized if isinstance(serialized, tf.data.Dataset) else (
      tf.data.Dataset.from_tensor_slices(tf.constant(serialized, tf.string)))
  for batch in dataset.batch(4096):
    for name, values in tf.io.parse_example(batch, spec).items():
      columns[name].append(values.numpy())
  frame = pd.DataFrame({name: np.concatenate(parts) for name, parts in columns.items()})
  for feature in wanted:
    if feature.dtype == 'string':
      frame[feature.name] = frame[feature.name].str.decode('utf-8')
  return frame


def input_columns() -> List[str]:
  """The columns the peers read from a frame: the tabular fields and the TIME field (which
  orders the LR's validation part; never an input)."""
  time = features.time_feature()
  return [f.name for f in tabular_features()] + ([time.name] if time else [])


def _numeric(frame: pd.DataFrame) -> np.ndarray:
  """NUMERIC fields as the model sees them before z-scoring: sign(x) * log1p(|x|) where
  features.py says log_scale (models/preprocessing.log_scale); missing values stay NaN."""
  columns = []
  for feature in features.with_role(features.NUMERIC):
    values = frame[feature.name].to_numpy(dtype=float)
    columns.append(np.sign(values) * np.log1p(np.abs(values)) if feature.log_scale else values)
  return np.column_stack(columns)


def validation_rows(frame: pd.DataFrame, share: float = VALIDATION_SHARE,
                    seed: int = SEED) -> np.ndarray:
  """Which training rows validate the LR's C: the latest `share` by the TIME field, or a
  seeded random `share` of rows without one."""
  rows = len(frame)
  count = max(1, int(round(share * rows)))
  time = features.time_feature()
  if time is not None and time.name in frame:
    order = np.argsort(frame[time.name].to_numpy(), kind='stable')
  else:
    order = np.random.default_rng(seed).permutation(rows)
  chosen = np.zeros(rows, bool)
  chosen[order[rows - count:]] = True
  return chosen


def logistic_pipeline(c: float = 1.0):
  one_hot = [f.name for f in features.with_role(features.CATEGORICAL, features.INTEGER)]
  numeric = [f.name for f in features.with_role(features.NUMERIC)]
  parts = [('one_hot', OneHotEncoder(min_frequency=MIN_FREQUENCY,
                                     handle_unknown='infrequent_if_exist'), one_hot)]
  if numeric:
    parts.append(('numeric', make_pipeline(FunctionTransformer(_numeric),
                                           SimpleImputer(add_indicator=True),
                                           StandardScaler()), numeric))
  return make_pipeline(ColumnTransformer(parts), LogisticRegression(C=c, max_iter=2000))


class TunedLogistic(ClassifierMixin, BaseEstimator):
  """logistic_pipeline with C chosen from `grid` by log-loss on validation_rows, refitted on
  every row (GridSearchCV over one predefined split). After fit: `search` (its cv_results_
  and best_params_)."""

  def __init__(self, grid=C_GRID):
    self.grid = grid

  def fit(self, frame: pd.DataFrame, labels):
    split = PredefinedSplit(np.where(validation_rows(frame), 0, -1))
    self.search = GridSearchCV(logistic_pipeline(), {'logisticregression__C': list(self.grid)},
                               scoring='neg_log_loss', cv=split, refit=True)
    self.search.fit(frame, np.asarray(labels))
    self.classes_ = self.search.classes_
    return self

  @property
  def c(self) -> float:
    return self.search.best_params_['logisticregression__C']

  def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
    return self.search.predict_proba(frame)


def gbdt():
  categorical = [f.name for f in features.with_role(features.CATEGORICAL)]
  ordered = [f.name for f in features.with_role(features.INTEGER, features.NUMERIC)]
  return make_pipeline(
      ColumnTransformer([
          ('ordinal', OrdinalEncoder(handle_unknown='use_encoded_value', unknown_value=np.nan,
                                     min_frequency=MIN_FREQUENCY,
                                     max_categories=MAX_CATEGORIES), categorical),
          ('ordered', 'passthrough', ordered)]),
      HistGradientBoostingClassifier(
          categorical_features=[True] * len(categorical) + [False] * len(ordered),
          learning_rate=0.05, max_iter=500, early_stopping=True, n_iter_no_change=20,
          random_state=SEED))


def peers() -> Dict[str, object]:
  """Unfitted peers on the tabular fields (no image); fit(frame of input_columns(), labels)."""
  return {LOGISTIC: TunedLogistic(), GBDT: gbdt()}


def figures(labels: np.ndarray, probabilities: np.ndarray) -> Dict[str, float]:
  """evaluation_results' AUC, log-loss and calibration of one scorer, with rows and clicks."""
  measured = evaluation_results.figures(labels, probabilities)
  return {'auc': measured[evaluation_results.AUC],
          'logloss': measured[evaluation_results.LOGLOSS],
          'calibration': measured[evaluation_results.CALIBRATION],
          'rows': len(labels), 'clicks': int(np.asarray(labels).sum())}
