"""SageMaker tuning jobs: every field mapped or reported as ignored, SDK quirks accepted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tuner.cli import cli
from tuner.errors import SearchSpaceError
from tuner.space import load_space
from tuner.space.sagemaker import convert_tuning_job, space_from_sagemaker

# What the SageMaker Python SDK 2.x sends: all three range lists (one empty), ScalingType "Auto",
# str() numbers, a tuned name absent from the static ones, SDK-added keys, the newer
# HyperParameterTuningResourceConfig, and fields that mean nothing locally.
SDK_BODY = {
    "HyperParameterTuningJobName": "ic-tuning 2026/11",
    "HyperParameterTuningJobConfig": {
        "Strategy": "Bayesian",
        "HyperParameterTuningJobObjective": {
            "MetricName": "validation:accuracy",
            "Type": "Maximize",
        },
        "ResourceLimits": {
            "MaxNumberOfTrainingJobs": 20,
            "MaxParallelTrainingJobs": 2,
            "MaxRuntimeInSeconds": 3600,
        },
        "ParameterRanges": {
            "ContinuousParameterRanges": [
                {
                    "Name": "learning_rate",
                    "MinValue": "1e-05",
                    "MaxValue": "0.5",
                    "ScalingType": "Logarithmic",
                },
                {"Name": "momentum", "MinValue": "0.0", "MaxValue": "0.999", "ScalingType": "Auto"},
                {
                    "Name": "beta_2",
                    "MinValue": "0.9",
                    "MaxValue": "0.9999",
                    "ScalingType": "ReverseLogarithmic",
                },
            ],
            "IntegerParameterRanges": [
                {
                    "Name": "mini_batch_size",
                    "MinValue": "8",
                    "MaxValue": "64.0",
                    "ScalingType": "Auto",
                }
            ],
            "CategoricalParameterRanges": [],
        },
        "TrainingJobEarlyStoppingType": "Auto",
        "TuningJobCompletionCriteria": {
            "TargetObjectiveMetricValue": 0.95,
            "BestObjectiveNotImproving": {"MaxNumberOfTrainingJobsNotImproving": 5},
            "ConvergenceDetected": {"CompleteOnConvergence": "Enabled"},
        },
        "RandomSeed": 7,
    },
    "TrainingJobDefinition": {
        "StaticHyperParameters": {
            "num_training_samples": "300",
            "num_classes": "10",
            "num_layers": "20",
            "image_shape": "3,32,32",
            "epochs": "2",
            "early_stopping": "True",
            "_tuning_objective_metric": "validation:accuracy",
            "sagemaker_estimator_class_name": "Estimator",
        },
        "AlgorithmSpecification": {
            "TrainingImage": "811284229777.dkr.ecr.us-east-1.amazonaws.com/image-classification:1",
            "TrainingInputMode": "File",
        },
        "RoleArn": "arn:aws:iam::111122223333:role/SageMaker",
        "InputDataConfig": [
            {
                "ChannelName": "train",
                "ContentType": "application/x-recordio",
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/train"}},
            },
            {
                "ChannelName": "validation",
                "ContentType": "application/x-recordio",
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/val"}},
            },
        ],
        "OutputDataConfig": {"S3OutputPath": "s3://b/output"},
        "HyperParameterTuningResourceConfig": {"InstanceCount": 1, "InstanceType": "ml.p3.2xlarge"},
        "StoppingCondition": {"MaxRuntimeInSeconds": 86400},
        "EnableNetworkIsolation": False,
        "DebugHookConfig": {"S3OutputPath": "s3://b/debug"},
        "RetryStrategy": {"MaximumRetryAttempts": 2},
    },
    "Tags": [{"Key": "team", "Value": "vision"}],
}


def test_an_sdk_request_body_maps_every_field(assets: Path) -> None:
    conversion = convert_tuning_job(body=SDK_BODY, data_dir=assets / "recordio" / "cifar10")
    m = conversion.mapping
    assert m["study"] == {"name": "ic-tuning-2026-11", "seed": 7}
    assert m["objective"] == {"metric": "validation:accuracy", "mode": "max"}
    assert m["limits"] == {
        "max_trials": 20,
        "max_parallel": 2,
        "max_wall_seconds": 3600.0,
        "target_value": 0.95,
        "max_trials_not_improving": 5,
        "max_retries": 2,
    }
    assert m["search"]["learning_rate"] == {
        "type": "continuous",
        "low": 1e-5,
        "high": 0.5,
        "scaling": "log",
    }
    assert m["search"]["beta_2"]["scaling"] == "reverse_log"
    assert m["search"]["mini_batch_size"] == {
        "type": "integer",
        "low": 8,
        "high": 64,
        "scaling": "auto",
    }
    assert m["sampler"] == {"name": "tpe"} and m["pruner"] == {"name": "asha"}
    assert m["data"]["content_type"] == "application/x-recordio"
    assert "_tuning_objective_metric" not in m["fixed"] and m["fixed"]["epochs"] == "2"
    ignored = dict(conversion.ignored)
    for field in (
        "TrainingJobDefinition.RoleArn",
        "TrainingJobDefinition.AlgorithmSpecification",
        "TrainingJobDefinition.HyperParameterTuningResourceConfig",
        "TrainingJobDefinition.StoppingCondition",
        "TrainingJobDefinition.DebugHookConfig",
        "Tags",
        "HyperParameterTuningJobConfig.TuningJobCompletionCriteria.ConvergenceDetected",
    ):
        assert field in ignored and ignored[field], field
    assert any("S3" in why for f, why in conversion.ignored if "InputDataConfig[0]" in f)
    report = "\n".join(conversion.report_lines())
    assert (
        "mapped   HyperParameterTuningJobConfig.ResourceLimits.MaxNumberOfTrainingJobs -> "
        "limits.max_trials" in report
    )
    space = space_from_sagemaker(conversion)
    assert space.name == "ic-tuning-2026-11" and space.limits.max_trials == 20
    lr = next(d for d in space.dimensions if d.name == "learning_rate").distribution
    assert lr.log and lr.low == pytest.approx(1e-5)
    assert space.hyperparameters({}).early_stopping is True


def test_a_bare_tuning_job_config_and_hyperband_are_accepted(tmp_path: Path) -> None:
    config = dict(SDK_BODY["HyperParameterTuningJobConfig"])  # type: ignore[arg-type]
    config["Strategy"] = "Hyperband"
    config["StrategyConfig"] = {"HyperbandStrategyConfig": {"MinResource": "1", "MaxResource": "2"}}
    conversion = convert_tuning_job(body=config)
    assert conversion.mapping["sampler"] == {"name": "random"}
    assert conversion.mapping["pruner"] == {"name": "asha", "grace_period": 1, "max_t": 2}
    assert "fixed" not in conversion.mapping
    assert any("data.path" in note for note in conversion.notes)


def test_malformed_fields_are_all_reported_with_their_json_path() -> None:
    config = json.loads(json.dumps(SDK_BODY))
    ranges = config["HyperParameterTuningJobConfig"]["ParameterRanges"]
    ranges["ContinuousParameterRanges"][0]["MinValue"] = "tiny"
    ranges["IntegerParameterRanges"][0]["ScalingType"] = "Exponential"
    config["HyperParameterTuningJobConfig"]["Strategy"] = "Genetic"
    with pytest.raises(SearchSpaceError) as info:
        convert_tuning_job(body=config)
    text = "\n".join(info.value.problems)
    assert "ContinuousParameterRanges[0].MinValue: must be a number, but got 'tiny'" in text
    assert "IntegerParameterRanges[0].ScalingType: must be one of Auto" in text
    assert "Strategy: must be one of Bayesian" in text
    with pytest.raises(SearchSpaceError, match="no HyperParameterTuningJobConfig"):
        convert_tuning_job(body={"TrainingJobName": "x"})


def test_contract_problems_of_a_sagemaker_job_name_the_yaml_path(assets: Path) -> None:
    body = json.loads(json.dumps(SDK_BODY))
    body["HyperParameterTuningJobConfig"]["ParameterRanges"]["ContinuousParameterRanges"][0][
        "MaxValue"
    ] = "5"
    conversion = convert_tuning_job(body=body, data_dir=assets / "cifar10")
    with pytest.raises(SearchSpaceError) as info:
        space_from_sagemaker(conversion)
    assert any("search.learning_rate.high" in p for p in info.value.problems)


def test_tune_convert_writes_a_yaml_that_loads_as_the_same_space(
    tmp_path: Path, assets: Path
) -> None:
    source = tmp_path / "job.json"
    source.write_text(json.dumps(SDK_BODY))
    out = tmp_path / "job.yaml"
    result = CliRunner().invoke(
        cli, ["convert", str(source), "--data", str(assets / "cifar10"), "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "ignored  TrainingJobDefinition.RoleArn" in result.output
    text = out.read_text()
    assert text.startswith("# Converted from a SageMaker tuning-job definition")
    space = load_space(out)
    direct = space_from_sagemaker(convert_tuning_job(body=SDK_BODY, data_dir=assets / "cifar10"))
    assert space.dimensions == direct.dimensions and space.fixed == direct.fixed
    assert space.limits == direct.limits and space.objective == direct.objective


def test_tune_run_reads_a_sagemaker_json_and_needs_local_data(tmp_path: Path, assets: Path) -> None:
    from tuner.commands.run import load_study_definition

    source = tmp_path / "job.json"
    source.write_text(json.dumps(SDK_BODY))
    lines: list[str] = []
    space = load_study_definition(source, assets / "cifar10", log=lines.append)
    assert space.limits.max_parallel == 2
    assert any(line.startswith("ignored  TrainingJobDefinition.RoleArn") for line in lines)
    with pytest.raises(SearchSpaceError, match="--data"):
        load_study_definition(source, None)
