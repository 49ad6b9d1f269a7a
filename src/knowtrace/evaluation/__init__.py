"""Evaluating learner models: metrics, learner splits, the protocols and the HTML report."""

from knowtrace.evaluation.dkvmn_split import DkvmnSplit, read_dkvmn_split
from knowtrace.evaluation.metrics import (
    accuracy,
    auc,
    expected_calibration_error,
    log_loss,
    reliability,
    rmse,
    roc_curve,
    score_all,
)
from knowtrace.evaluation.per_concept import per_concept_metrics
from knowtrace.evaluation.protocol import (
    Evaluation,
    Scored,
    Step,
    evaluate,
    evaluate_dkvmn,
    evaluate_holdout,
    evaluate_kfold,
    score_models,
)
from knowtrace.evaluation.report import write_report
from knowtrace.evaluation.split import Fold, LearnerSplit, kfold_learners, kfold_splits, learner_hash, learner_split

__all__ = [
    "DkvmnSplit",
    "Evaluation",
    "Fold",
    "LearnerSplit",
    "Scored",
    "Step",
    "accuracy",
    "auc",
    "evaluate",
    "evaluate_dkvmn",
    "evaluate_holdout",
    "evaluate_kfold",
    "expected_calibration_error",
    "kfold_learners",
    "kfold_splits",
    "learner_hash",
    "learner_split",
    "log_loss",
    "per_concept_metrics",
    "read_dkvmn_split",
    "reliability",
    "rmse",
    "roc_curve",
    "score_all",
    "score_models",
    "write_report",
]
