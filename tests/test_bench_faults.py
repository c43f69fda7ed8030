"""The fast part of issue 17's fault campaign (`benchmarks/bench_faults.py`): each fuzz target on a
few hundred derandomized Hypothesis inputs in this process, and the sandbox that counts hangs and
crashes in the campaign."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, note, settings

from benchmarks.faults.fuzz_targets import FAILURES, TARGETS, Outcome

settings.register_profile(
    "fuzz-make-test",
    max_examples=200,
    derandomize=True,  # the same inputs on every run: a failure here reproduces
    deadline=None,  # a loaded 2-core machine makes per-case times meaningless
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FUZZ = settings.get_profile("fuzz-make-test")


def _check(name: str, case: object) -> None:
    target = TARGETS[name]
    note(target.describe(case)[:2000])
    outcome: Outcome = target.run(case)
    assert outcome.kind not in FAILURES, f"{outcome.kind}: {outcome.detail}"


@FUZZ
@given(TARGETS["hyperparameters"].cases())
def test_parse_hyperparameters_accepts_or_names_the_field(case: dict[str, str]) -> None:
    _check("hyperparameters", case)


@pytest.mark.slow
@FUZZ
@given(TARGETS["space"].cases())
def test_the_search_space_loader_accepts_or_reports_problems_with_their_lines(case: str) -> None:
    _check("space", case)


@pytest.mark.slow
@FUZZ
@given(TARGETS["recordio"].cases())
def test_damaged_recordio_is_an_error_naming_file_and_record_never_a_wrong_label(case) -> None:
    _check("recordio", case)


@pytest.mark.slow
@settings(FUZZ, max_examples=100)
@given(TARGETS["archive"].cases())
def test_a_damaged_or_hostile_archive_is_one_error_and_runs_nothing(case) -> None:
    _check("archive", case)


def test_the_sandbox_counts_a_hang_and_a_crash_and_goes_on() -> None:
    from benchmarks.faults.sandbox import Sandbox

    with Sandbox("sleep", timeout=3) as sandbox:
        assert sandbox.run(0).kind == "accepted"
        hang = sandbox.run(60)
        assert (hang.kind, sandbox.restarts) == ("hang", 1)
        assert sandbox.run(0).kind == "accepted"  # a fresh worker
    with Sandbox("segfault", timeout=30) as sandbox:
        crash = sandbox.run(None)
        assert crash.kind == "crash" and "SIGSEGV" in crash.detail


def test_the_campaign_prints_the_counts_of_each_target(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks.bench_faults import main

    code = main(["--part", "fuzz", "--target", "hyperparameters", "--cases", "20"])
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("hyperparameters"))
    cases, accepted, clean, *failures = (int(v) for v in row.split()[1:-1])
    assert code == 0 and cases == 20 and accepted + clean == 20 and not any(failures)
    assert "targets (20 inputs per target; 0 tracebacks, hangs" in out and out.rstrip().endswith(
        "met"
    )
    # a time budget that cuts a target short of its inputs misses the target
    code = main(
        ["--part", "fuzz", "--target", "hyperparameters", "--cases", "20", "--seconds", "0.001"]
    )
    assert code != 0 and capsys.readouterr().out.rstrip().endswith("NOT met")


@pytest.mark.slow
def test_tune_train_on_a_full_disk_keeps_the_previous_model_and_continues(tmp_path) -> None:
    from benchmarks.faults.disk_full import STATE_FILE, tune_train

    output, state = tmp_path / "out", tmp_path / "state"
    output.mkdir()
    previous = output / "model.tar.gz"
    previous.write_bytes(b"the model of an earlier run")
    # ResNet-20: the state file (~2.3 MB) fits, the archive with 2 checkpoints (~3.3 MB) does not
    failed = tune_train(output, state, epochs=2, limit=2_800_000)
    assert failed.code == 2 and "Traceback" not in failed.err, failed.err
    assert failed.error_lines == [
        f"error: cannot write {previous}: the file would be larger than allowed (a file size "
        "limit, see ulimit -f) (File too large); nothing was replaced: the previous file, if "
        "any, is unchanged"
    ]
    assert previous.read_bytes() == b"the model of an earlier run"
    assert not list(output.glob("*.tmp")) and (state / STATE_FILE).is_file()

    again = tune_train(output, state, epochs=2)
    assert again.code == 0, again.err
    assert (again.resumed_after, again.epochs) == (2, [])  # nothing trained twice
    assert previous.read_bytes() != b"the model of an earlier run"
