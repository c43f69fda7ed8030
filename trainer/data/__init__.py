"""The data layer: SageMaker's three input forms (images + .lst, MXNet RecordIO, augmented
manifests), single- and multi-label, the seed's augmentation, and the batches for training."""

from trainer.data.config import CONTENT_TYPES, LABEL_FORMATS, DataConfig, detect_content_type
from trainer.data.loaders import (
    DEFAULT_CACHE_BYTES,
    EpochLoader,
    Loaders,
    build_loaders,
    loader_settings,
)
from trainer.data.lst import LstEntry, read_lst, write_lst
from trainer.data.manifest import ManifestEntry, read_manifest
from trainer.data.memory import InMemoryLoaders
from trainer.data.pack import PackResult, pack_images
from trainer.data.recordio import (
    ImageRecord,
    RecordReader,
    RecordWriter,
    pack_image_record,
    read_index,
    split_records,
    unpack_image_record,
)
from trainer.data.transforms import AUGMENTATIONS, Augmentation, augment_batch, center_crop_batch

__all__ = [
    "AUGMENTATIONS",
    "CONTENT_TYPES",
    "DEFAULT_CACHE_BYTES",
    "LABEL_FORMATS",
    "Augmentation",
    "DataConfig",
    "EpochLoader",
    "ImageRecord",
    "InMemoryLoaders",
    "Loaders",
    "LstEntry",
    "ManifestEntry",
    "PackResult",
    "RecordReader",
    "RecordWriter",
    "augment_batch",
    "build_loaders",
    "center_crop_batch",
    "detect_content_type",
    "loader_settings",
    "pack_images",
    "pack_image_record",
    "read_index",
    "read_lst",
    "read_manifest",
    "split_records",
    "unpack_image_record",
    "write_lst",
]
