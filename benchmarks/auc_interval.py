"""The benchmark's 95 % interval for the AUC gap between two scorers of the same rows,
resampling ads: the paired interval of components/evaluation_results.py (its one home, which
the Evaluator's model-against-challenger margin uses too), under the names the benchmark uses.
"""
from components.evaluation_results import RESAMPLES, Estimate, auc_gap  # noqa: F401
