"""Accuracy, top-k and multi-label accuracy, summed on the device and read once per epoch."""

from __future__ import annotations

import pytest
import torch

from trainer.metrics import MetricTotals, correct_count, multi_label_correct, top_k_correct

LOGITS = torch.tensor([[3.0, 2.0, 1.0], [1.0, 3.0, 2.0], [1.0, 2.0, 3.0], [3.0, 1.0, 2.0]])
LABELS = torch.tensor([0, 2, 1, 1])


def test_accuracy_and_top_k_counts() -> None:
    assert correct_count(LOGITS, LABELS).item() == 1
    assert top_k_correct(LOGITS, LABELS, 2).item() == 3
    assert top_k_correct(LOGITS, LABELS, 3).item() == 4
    assert top_k_correct(LOGITS, LABELS, 10).item() == 4  # k above the class count


def test_multi_label_counts_decisions_at_sigmoid_one_half() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.0], [-3.0, -0.5, 4.0]])
    labels = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    # row 0: 1,1,0(logit 0 -> predicted positive, label 0); row 1: 1,0,1
    assert multi_label_correct(logits, labels).item() == 4


def test_totals_over_batches_give_sagemaker_named_metrics() -> None:
    totals = MetricTotals(torch.device("cpu"), multi_label=False, top_k=2)
    totals.update(LOGITS[:2], LABELS[:2], torch.tensor(1.0))
    totals.update(LOGITS[2:], LABELS[2:], torch.tensor(3.0))
    assert totals.compute("validation") == pytest.approx(
        {
            "validation:accuracy": 0.25,
            "validation:loss": 2.0,
            "validation:top_k_accuracy_2": 0.75,
        }
    )


def test_multi_label_accuracy_is_averaged_over_classes_and_has_no_top_k() -> None:
    totals = MetricTotals(torch.device("cpu"), multi_label=True, top_k=2)
    labels = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    totals.update(torch.tensor([[1.0, -1.0], [-1.0, 1.0]]), labels, torch.tensor(0.5))
    # class 0: 1 of 2 right, class 1: 2 of 2 right -> mean 0.75
    assert totals.compute("train") == pytest.approx({"train:accuracy": 0.75, "train:loss": 0.5})
