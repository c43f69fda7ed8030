"""The recorded learning-curve benchmark: its design, its simulator, and that a simulated study
is the real one (same trainer numbers, same ASHA decisions) for configurations in the table."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from benchmarks.blackbox.design import from_unit, sobol_design, to_unit
from benchmarks.blackbox.record import main as record_main
from benchmarks.blackbox.record import recorded_sha256
from benchmarks.blackbox.simulate import Method, Table, simulate
from tuner.space import load_space
from tuner.study import load_trials, run_study

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "search_spaces" / "quickstart.yaml"
TABLE = ROOT / "benchmarks" / "blackbox" / "tables" / "quickstart.csv"


def test_the_design_fills_every_branch_and_only_its_own_parameters() -> None:
    space = load_space(QUICKSTART)
    design = sobol_design(space.dimensions, space.base, 64)
    assert Counter(c["optimizer"] for c in design) == {
        o: 16 for o in ("sgd", "nag", "adam", "rmsprop")
    }
    assert Counter(c["mini_batch_size"] for c in design) == {64: 32, 128: 32}
    for config in design:
        branch = config["optimizer"]
        assert ("momentum" in config) == ("weight_decay" in config) == (branch in ("sgd", "nag"))
        assert ("beta_1" in config) == (branch == "adam")
        assert ("gamma" in config) == (branch == "rmsprop")
        assert 1e-3 <= config["learning_rate"] <= 0.5
    # log-scaled rates spread over the decades, not bunched at the top of the range
    rates = np.log10([c["learning_rate"] for c in design])
    assert np.histogram(rates, bins=3)[0].min() >= 15
    # the same seed gives the same design (a resumed recording checks it)
    assert sobol_design(space.dimensions, space.base, 64) == design


def test_unit_coordinates_respect_log_and_reverse_log_scales() -> None:
    space = load_space(QUICKSTART)
    dims = {d.name: d for d in space.dimensions}
    assert from_unit(dims["learning_rate"], 0.5) == pytest.approx(math.sqrt(1e-3 * 0.5))
    # momentum is reverse-log: the middle of [0.5, 0.99] is 1 - sqrt(0.5 * 0.01)
    assert from_unit(dims["momentum"], 0.5) == pytest.approx(1 - math.sqrt(0.5 * 0.01))
    for name in ("learning_rate", "momentum", "weight_decay", "beta_1"):
        for u in (0.0, 0.3, 0.999):
            assert to_unit(dims[name], from_unit(dims[name], u)) == pytest.approx(u, abs=1e-9)
    assert from_unit(dims["optimizer"], 0.99) == "rmsprop"


@pytest.fixture(scope="module")
def table() -> Table:
    if not TABLE.is_file():
        pytest.fail(f"{TABLE} is committed; record it with benchmarks/blackbox/record.py")
    return Table.load(TABLE, load_space(QUICKSTART))


def test_the_committed_table_is_the_recorded_design(table: Table) -> None:
    frame = pd.read_csv(TABLE)
    meta = json.loads(TABLE.with_suffix(".json").read_text())
    space = load_space(QUICKSTART)
    design = sobol_design(space.dimensions, space.base, meta["configs"])
    assert table.epochs == space.epochs == 9 and meta["seeds"] >= 3 and meta["configs"] >= 64
    assert frame.groupby(["config", "seed"]).size().eq(9).all()  # whole runs only
    assert frame["validation:accuracy"].between(0, 1).all() and (frame["cpu_seconds"] > 0).all()
    for row, config in zip(table.ids, table.configs, strict=True):
        assert config == pytest.approx(design[row])  # each row is its design point, trained
    assert meta["runs"] == frame.groupby(["config", "seed"]).ngroups
    # recorded from the quickstart's data, fixed and search sections as they are now
    assert meta["recorded_sha256"] == recorded_sha256(QUICKSTART.read_text())
    # a recorded configuration is its own nearest neighbour
    for row, config in enumerate(table.configs):
        assert table.nearest(config) == row
    assert table.level(0.01) == table.best >= table.level(0.05) >= table.level(0.10)


def test_a_simulated_study_spends_its_budget_and_asha_stops_only_at_rungs(table: Table) -> None:
    space = load_space(QUICKSTART)
    method = Method("TPE+ASHA", "tpe", dict(space.sampler.options), asha=(1, 3))
    trace = simulate(space, table, method, budget=200, max_parallel=2, seed=3)
    run = [epochs for _, _, epochs in trace.trials]
    assert sum(run) <= 200 and Counter(run).keys() <= {1, 3, 9}
    assert Counter(run)[1] > Counter(run)[9] > 0  # most trials stop at the first rung
    assert trace.epochs == sorted(trace.epochs) and trace.seconds == sorted(trace.seconds)
    # the chosen configuration only changes for a better observed one; its quality is a table row's
    assert set(trace.chosen) <= set(table.quality.tolist())
    # a study is a function of its seed
    again = simulate(space, table, method, budget=200, max_parallel=2, seed=3)
    assert again.trials == trace.trials and again.chosen == trace.chosen
    random = simulate(space, table, Method("random", "random"), budget=90, max_parallel=2, seed=3)
    ran = [e for _, _, e in random.trials]  # no pruning: every trial that ended ran all 9
    assert set(ran) == {9} and len(ran) in (9, 10)


TINY = """\
study: {{name: tiny, directory: studies, seed: 0}}
data: {{path: {data}}}
tracking: {{enabled: false}}
objective: {{metric: validation:loss}}   # no ties between trials that all predict one class
fixed:
  num_classes: 10
  num_training_samples: 300
  num_layers: 20
  image_shape: 3,32,32
  mini_batch_size: 64
  epochs: 3
search:
  learning_rate: {{type: continuous, low: 1.0e-4, high: 0.5, scaling: log}}
  optimizer: {{type: categorical, values: [sgd, adam]}}
  momentum:
    {{type: continuous, low: 0.5, high: 0.99, scaling: reverse_log, when: {{optimizer: [sgd]}}}}
sampler: {{name: random}}
pruner: {{name: asha, grace_period: 1, reduction_factor: 3}}
limits: {{max_trials: 4, max_parallel: 1}}
"""


@pytest.mark.slow
def test_a_real_study_reproduces_the_recorded_curves_and_asha_decisions(
    ray_cluster: None, tmp_path: Path, assets: Path
) -> None:
    space_path = tmp_path / "tiny.yaml"
    space_path.write_text(TINY.format(data=assets / "cifar10"))
    table_path = tmp_path / "tiny.csv"
    argv = [str(space_path), "--configs", "4", "--seeds", "1", "--jobs", "2"]
    assert record_main([*argv, "--out", str(table_path), "--work", str(tmp_path / "work")]) == 0
    recorded_csv = table_path.read_text()
    # without its work folder (a fresh clone), the same command continues from the table itself
    again = ["--out", str(table_path), "--work", str(tmp_path / "elsewhere")]
    assert record_main([*argv, *again]) == 0
    assert len(list((tmp_path / "elsewhere" / "runs").glob("*.json"))) == 4
    assert not list((tmp_path / "elsewhere" / "logs").iterdir())  # nothing was trained again
    assert table_path.read_text() == recorded_csv
    meta = json.loads(table_path.with_suffix(".json").read_text())
    assert sum(meta["runs_per_cpu"].values()) == 4
    space = load_space(space_path)
    table = Table.load(table_path, space)
    assert len(table.configs) == 4
    # best (lowest loss) first at epoch 1, so ASHA (rungs at epochs 1 and 3) stops poorer ones there
    order = np.argsort(np.array([c[0, 0] for c in table.curves]), kind="stable")
    points = [table.configs[i] for i in order]

    with_points = yaml.safe_load(space_path.read_text())
    with_points["warm_start"] = {"points": points}
    real_path = tmp_path / "real.yaml"
    real_path.write_text(yaml.safe_dump(with_points))
    real_space = load_space(real_path)
    run_study(real_space, log=lambda line: None)
    trials = {
        tuple(sorted(r.config.items())): r
        for r in load_trials(real_space.study_dir, real_space.objective, real_space.mode)
    }
    assert len(trials) == 4

    sim = simulate(
        space,
        table,
        Method("replay", "random", asha=(1, 3)),
        budget=100,
        max_trials=4,
        max_parallel=1,
        seed=0,
        points=points,
        training_seed=0,
    )
    assert [row for row, _, _ in sim.trials] == list(order)
    epochs_run = []
    for row, _, epochs in sim.trials:
        real = trials[tuple(sorted(table.configs[row].items()))]
        recorded = table.curves[row][0]
        got = [h["validation:loss"] for h in real.history]
        assert len(got) == epochs, (table.configs[row], real.status, got, recorded)
        np.testing.assert_allclose(got, recorded[:epochs], atol=1e-6)
        assert real.status == ("finished" if epochs == 3 else "pruned")
        epochs_run.append(epochs)
    assert 3 in epochs_run and min(epochs_run) == 1  # ASHA did stop someone, in both
