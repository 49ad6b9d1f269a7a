"""Evaluating learner models: metrics, learner splits and the train/test protocol."""

from knowtrace.evaluation.metrics import accuracy, auc, expected_calibration_error, log_loss, rmse, score_all
from knowtrace.evaluation.protocol import evaluate
from knowtrace.evaluation.split import LearnerSplit, learner_hash, learner_split

__all__ = [
    "LearnerSplit",
    "accuracy",
    "auc",
    "evaluate",
    "expected_calibration_error",
    "learner_hash",
    "learner_split",
    "log_loss",
    "rmse",
    "score_all",
]
