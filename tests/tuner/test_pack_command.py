"""`tune pack`: .lst + images -> .rec + .idx from the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer.data import RecordReader, read_lst
from tuner.cli import main


def test_pack_command_writes_rec_and_idx(assets: Path, tmp_path: Path, capsys) -> None:
    lst = assets / "cifar10" / "validation_lst" / "validation.lst"
    out = tmp_path / "val"
    main(
        [
            "pack",
            str(lst),
            str(assets / "cifar10" / "validation"),
            str(out),
            "--resize",
            "36",
            "--quality",
            "80",
        ]
    )
    assert "wrote 100 records" in capsys.readouterr().out
    reader = RecordReader(tmp_path / "val.rec", tmp_path / "val.idx")
    assert len(reader) == len(read_lst(lst))


def test_pack_command_reports_bad_rows_as_one_error(tmp_path: Path, capsys) -> None:
    lst = tmp_path / "bad.lst"
    lst.write_text("0\tnot-a-label\tx.jpg\n")
    with pytest.raises(SystemExit) as info:
        main(["pack", str(lst), str(tmp_path), str(tmp_path / "o.rec")])
    assert info.value.code == 2
    assert "bad.lst, line 1: label 'not-a-label' is not a number" in capsys.readouterr().err
