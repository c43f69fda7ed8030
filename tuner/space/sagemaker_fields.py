"""SageMaker's tuning-job field names and values, and what each means for a local study (the
tables behind `tuner.space.sagemaker`)."""

from __future__ import annotations

__all__ = ["DESCRIBE_ONLY", "IGNORED", "OBJECTIVE_TYPES", "SCALING", "STRATEGIES"]

STRATEGIES = {"Bayesian": "tpe", "Random": "random", "Grid": "grid", "Hyperband": "random"}
SCALING = {
    "Auto": "auto",
    "Linear": "linear",
    "Logarithmic": "log",
    "ReverseLogarithmic": "reverse_log",
}
OBJECTIVE_TYPES = {"Maximize": "max", "Minimize": "min"}

# fields that say nothing about the algorithm or its search, and why they are not used
IGNORED = {
    "RoleArn": "IAM roles do not apply locally",
    "AlgorithmSpecification": "the algorithm is this trainer; training images and metric "
    "definitions do not apply",
    "OutputDataConfig": "results go to the study directory (study.directory)",
    "ResourceConfig": "instance types and counts do not apply; set resources.cpu / resources.gpu",
    "HyperParameterTuningResourceConfig": "instance types and counts do not apply; set "
    "resources.cpu / resources.gpu",
    "StoppingCondition": "there is no per-trial time limit; limits.max_wall_seconds bounds the "
    "study",
    "VpcConfig": "networking does not apply locally",
    "EnableNetworkIsolation": "networking does not apply locally",
    "EnableInterContainerTrafficEncryption": "networking does not apply locally",
    "EnableManagedSpotTraining": "spot instances do not apply locally",
    "CheckpointConfig": "trial checkpoints live in the study directory",
    "DebugHookConfig": "SageMaker Debugger does not apply",
    "ProfilerConfig": "SageMaker Profiler does not apply",
    "Environment": "container environment variables do not apply",
    "Tags": "AWS tags do not apply",
    "DefinitionName": "only one training definition is used",
    "Autotune": "SageMaker Autotune picks ranges itself; give them in search",
    "TrainingJobStatus": "a status of a finished job describes nothing to run",
}
DESCRIBE_ONLY = (
    "HyperParameterTuningJobArn",
    "HyperParameterTuningJobStatus",
    "CreationTime",
    "HyperParameterTuningEndTime",
    "LastModifiedTime",
    "TrainingJobStatusCounters",
    "ObjectiveStatusCounters",
    "BestTrainingJob",
    "OverallBestTrainingJob",
    "FailureReason",
    "TuningJobCompletionDetails",
    "ConsumedResources",
    "ResponseMetadata",
)
