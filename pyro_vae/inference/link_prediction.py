"""Link-prediction metrics: ROC AUC and average precision, in torch.

Both rank the scores of held-out edges (label 1) against held-out non-edges
(label 0), as ``sklearn.metrics.roc_auc_score`` and ``average_precision_score``
do in the paper's evaluation (``tkipf/gae``), ties included:

* AUC is the Mann-Whitney rank statistic
  ``(sum of the positives' ranks - n_pos (n_pos + 1) / 2) / (n_pos n_neg)`` with
  tied scores given their average rank, i.e. P(s_pos > s_neg) + P(s_pos = s_neg) / 2.
* AP is the step-wise area under the precision-recall curve,
  ``sum_t (R_t - R_{t-1}) P_t`` over the distinct scores t in decreasing order,
  where P_t and R_t are precision and recall of predicting "edge" for score >= t.

Both are invariant under monotone maps of the scores, so the logits z_i . z_j
give the same values as the paper's sigmoid(z_i . z_j).
"""

from __future__ import annotations

import torch


def _check(scores: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if scores.dim() != 1 or scores.shape != labels.shape:
        raise ValueError(
            f"scores and labels must be 1-D of one length, got {tuple(scores.shape)} and {tuple(labels.shape)}"
        )
    labels = labels.bool()
    if labels.all() or not labels.any():
        raise ValueError("AUC and AP need at least one positive and one negative label")
    return scores.double(), labels


def roc_auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve of ``scores`` for binary ``labels`` (the rank statistic)."""
    scores, labels = _check(scores, labels)
    _, inverse, counts = torch.unique(scores, return_inverse=True, return_counts=True)
    counts = counts.double()
    before = counts.cumsum(0) - counts
    ranks = (before + (counts + 1) / 2.0)[inverse]  # 1-based average ranks
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    return ((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)).item()


def average_precision(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Average precision: sum over decreasing thresholds of (recall step) x precision."""
    scores, labels = _check(scores, labels)
    unique, inverse = torch.unique(scores, return_inverse=True)
    k = len(unique)
    positives = torch.zeros(k, dtype=torch.float64).index_add_(0, inverse, labels.double())
    totals = torch.zeros(k, dtype=torch.float64).index_add_(0, inverse, torch.ones_like(scores))
    tp = positives.flip(0).cumsum(0)  # thresholds from the highest score down
    predicted = totals.flip(0).cumsum(0)
    recall_step = positives.flip(0) / labels.sum()
    return (recall_step * tp / predicted).sum().item()


def link_scores(z: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores z_i . z_j of the edges ``pos`` and non-edges ``neg`` (each ``(2, K)``), and their labels."""
    index = torch.cat([pos, neg], dim=1)
    scores = (z[index[0]] * z[index[1]]).sum(-1)
    labels = torch.cat([torch.ones(pos.shape[1]), torch.zeros(neg.shape[1])])
    return scores, labels


def link_metrics(z: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> dict[str, float]:
    """``{"auc": ..., "ap": ...}`` of the embeddings ``z`` on held-out edges ``pos`` vs non-edges ``neg``."""
    scores, labels = link_scores(z, pos, neg)
    return {"auc": roc_auc(scores, labels), "ap": average_precision(scores, labels)}
