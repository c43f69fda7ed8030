"""The search space: the YAML's schema, its loading and checks, sampling, the SageMaker import.

`load_space(path)` reads and validates a search-space YAML into a `SearchSpace`;
`convert_tuning_job` reads a SageMaker tuning-job JSON (see `tuner.space.sagemaker`).
"""

from tuner.space.loading import METRICS, SearchSpace, load_space, space_from_mapping
from tuner.space.sagemaker import Conversion, convert_tuning_job, space_from_sagemaker
from tuner.space.sampling import SAMPLERS, Dimension, build_sampler, canonical

__all__ = [
    "METRICS",
    "SAMPLERS",
    "Conversion",
    "Dimension",
    "SearchSpace",
    "build_sampler",
    "canonical",
    "convert_tuning_job",
    "load_space",
    "space_from_mapping",
    "space_from_sagemaker",
]
