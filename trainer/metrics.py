"""The algorithm's metrics: accuracy, top-k accuracy and, for multi-label, accuracy averaged over
classes (a class counts as predicted when its sigmoid is at least 0.5).

`MetricTotals` sums counts on the device, so a training step never waits for the host; the
numbers are read once per epoch by `MetricTotals.compute`.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = [
    "MetricTotals",
    "correct_count",
    "multi_label_correct",
    "top_k_correct",
]


def correct_count(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """How many rows have their label as the arg-max (a 0-d tensor on `logits`' device)."""
    return (logits.argmax(dim=1) == labels).sum()


def top_k_correct(logits: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """How many rows have their label among the `k` largest logits."""
    top = logits.topk(min(k, logits.shape[1]), dim=1).indices
    return (top == labels.unsqueeze(1)).any(dim=1).sum()


def multi_label_correct(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """How many (row, class) decisions match the multi-hot labels (logit >= 0 <=> sigmoid >= 0.5).

    Divided by rows x classes this is the accuracy averaged over classes, since every class has
    the same number of rows."""
    return ((logits >= 0) == (labels >= 0.5)).sum()


class MetricTotals:
    """Running sums for one epoch: loss, correct decisions and (single-label) top-k hits."""

    def __init__(self, device: torch.device, *, multi_label: bool, top_k: int | None) -> None:
        self.multi_label = multi_label
        self.top_k = None if multi_label else top_k
        # One in-place op per sum and batch: the step stays free of host syncs and cheap to launch.
        self._loss = torch.zeros((), dtype=torch.float64, device=device)
        self._correct = torch.zeros((), dtype=torch.int64, device=device)
        self._top = torch.zeros((), dtype=torch.int64, device=device)
        self._samples = 0
        self._classes = 1

    def update(self, logits: torch.Tensor, labels: torch.Tensor, loss: torch.Tensor) -> None:
        """Add one batch (`loss` is the batch mean); no host synchronisation."""
        logits = logits.detach()
        n = labels.shape[0]
        self._samples += n
        self._loss.add_(loss.detach(), alpha=n)
        if self.multi_label:
            self._classes = logits.shape[1]
            self._correct.add_(multi_label_correct(logits, labels))
            return
        self._correct.add_(correct_count(logits, labels))
        if self.top_k:
            self._top.add_(top_k_correct(logits, labels, self.top_k))

    def compute(self, prefix: str) -> dict[str, float]:
        """`{prefix}:accuracy`, `{prefix}:loss` and `{prefix}:top_k_accuracy_K`, summed over all
        workers when torch.distributed is initialised (one host sync)."""
        sums = torch.stack(
            [
                self._loss,
                self._correct.double(),
                self._top.double(),
                torch.tensor(float(self._samples), dtype=torch.float64, device=self._loss.device),
            ]
        )
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(sums)
        loss, correct, top, n = sums.tolist()
        n = max(n, 1.0)
        out = {
            f"{prefix}:accuracy": correct / (n * self._classes),
            f"{prefix}:loss": loss / n,
        }
        if self.top_k:
            out[f"{prefix}:top_k_accuracy_{self.top_k}"] = top / n
        return out
