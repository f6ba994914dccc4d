"""Evaluation: pass@k, maj@k, accuracy by modality / domain / difficulty, token statistics, reports."""

from vlrl.eval.metrics import PromptRecord, full_report, majority_correct, modality_gap, pass_at_k, summarize
from vlrl.eval.report import write_report
from vlrl.eval.runner import evaluate_samples

__all__ = ["PromptRecord", "evaluate_samples", "full_report", "majority_correct", "modality_gap", "pass_at_k",
           "summarize", "write_report"]
