"""The official per-impression metrics under the name the project's contract gives them
(`newsrec.metrics.impression_metrics`, DESIGN.md); they live in newsrec.evaluation.metrics
with the rest of evaluation."""

from newsrec.evaluation.metrics import ImpressionMetrics, impression_metrics

__all__ = ["ImpressionMetrics", "impression_metrics"]
