"""Progress inside long work: a plain line per interval off a terminal, a tqdm bar on one."""

from __future__ import annotations

import re

import pytest

from trainer.progress import Progress


def test_plain_lines_carry_the_step_the_rate_and_the_status() -> None:
    lines: list[str] = []
    with Progress(
        300,
        "epoch 2/5",
        log=lines.append,
        steps=3,
        status=lambda: "acc=0.5",
        bar=False,
        interval=0.0,
    ) as progress:
        for _ in range(3):
            progress.update(100)
    assert [re.sub(r" [0-9,]+ img/s", " R img/s", line) for line in lines] == [
        "epoch 2/5 [1/3] R img/s acc=0.5",
        "epoch 2/5 [2/3] R img/s acc=0.5",
        "epoch 2/5 [3/3] R img/s acc=0.5",
    ]


def test_short_work_prints_nothing_off_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    lines: list[str] = []
    calls: list[int] = []
    with Progress(
        100, "decoding train", log=lines.append, bar=False, status=lambda: str(calls.append(1))
    ) as progress:
        for _ in range(10):
            progress.update(10)
    assert lines == [] and calls == []  # the status (a device read) is not even asked for
    assert capsys.readouterr().err == ""


def test_a_terminal_gets_a_tqdm_bar_with_rate(capsys: pytest.CaptureFixture[str]) -> None:
    with Progress(50, "decoding train", bar=True) as progress:
        for _ in range(5):
            progress.update(10)
    err = capsys.readouterr().err
    assert "decoding train" in err and "img" in err
