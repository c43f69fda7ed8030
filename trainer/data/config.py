"""Where the data is and how to read it: `DataConfig` and the detection of its content type."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trainer.errors import DataError

__all__ = [
    "CONTENT_TYPES",
    "LABEL_FORMATS",
    "DataConfig",
    "detect_content_type",
    "manifest_path",
]

# Accepted names (ours and SageMaker's MIME types) -> canonical content type.
CONTENT_TYPES: dict[str, str] = {
    "auto": "auto",
    "image": "image",
    "application/x-image": "image",
    "image/jpeg": "image",
    "image/png": "image",
    "recordio": "recordio",
    "application/x-recordio": "recordio",
    "augmented-manifest": "augmented-manifest",
    "application/jsonlines": "augmented-manifest",
}
LABEL_FORMATS = ("multi-hot", "class-id")
CHANNELS = ("train", "validation")


@dataclass(frozen=True)
class DataConfig:
    """A data directory in SageMaker's channel layout and how to read it.

    `content_type`: `auto | image | recordio | augmented-manifest` (or SageMaker's MIME names).
    `attribute_names`: the manifest keys of the image reference and the label (SageMaker's
    `AttributeNames`). `label_format`: `multi-hot | class-id`, for multi-label manifests.
    `cache_bytes`: decoded data up to this size is kept in memory, larger channels are streamed
    (None: `trainer.data.DEFAULT_CACHE_BYTES`; 0: always stream).
    """

    root: Path
    content_type: str = "auto"
    attribute_names: tuple[str, str] = ("source-ref", "class")
    label_format: str = "multi-hot"
    cache_bytes: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))
        problems = []
        if self.content_type not in CONTENT_TYPES:
            problems.append(
                f"content_type must be one of {', '.join(CONTENT_TYPES)}, "
                f"but got {self.content_type!r}"
            )
        if self.label_format not in LABEL_FORMATS:
            problems.append(
                f"label_format must be one of {', '.join(LABEL_FORMATS)}, "
                f"but got {self.label_format!r}"
            )
        if self.cache_bytes is not None and self.cache_bytes < 0:
            problems.append(f"cache_bytes must be >= 0 (0 streams), but got {self.cache_bytes}")
        names = tuple(self.attribute_names)
        if len(names) != 2 or not all(isinstance(n, str) and n for n in names):
            problems.append(
                "attribute_names must be two names (image reference, label), e.g. "
                f"('source-ref', 'class'), but got {self.attribute_names!r}"
            )
        object.__setattr__(self, "attribute_names", names)
        if problems:
            raise DataError(problems)


def manifest_path(root: Path, channel: str) -> Path | None:
    """A channel's augmented manifest: `root/<channel>.manifest`, or one in `root/<channel>/`."""
    direct = root / f"{channel}.manifest"
    if direct.is_file():
        return direct
    inside = sorted((root / channel).glob("*.manifest")) if (root / channel).is_dir() else []
    return inside[0] if len(inside) == 1 else None


def detect_content_type(data: DataConfig) -> str:
    """The canonical content type of `data`: the stated one, or what the directory holds."""
    stated = CONTENT_TYPES[data.content_type]
    if stated != "auto":
        return stated
    root = data.root
    if not root.is_dir():
        raise DataError(f"data directory {root} does not exist")
    has_lst = (root / "train_lst").is_dir()
    has_manifest = manifest_path(root, "train") is not None
    if has_lst and has_manifest:
        raise DataError(
            f"{root} holds both image channels (train_lst/) and an augmented manifest; state "
            "which to use: content_type 'image' or 'augmented-manifest'"
        )
    if has_lst:
        return "image"
    if has_manifest:
        return "augmented-manifest"
    if (root / "train").is_dir() and any((root / "train").glob("*.rec")):
        return "recordio"
    found = sorted(p.name for p in root.iterdir())[:20]
    raise DataError(
        f"cannot tell the content type of {root}: expected train/ + validation/ + train_lst/ + "
        "validation_lst/ (images with .lst), train/*.rec + validation/*.rec (RecordIO), or "
        f"train.manifest + validation.manifest (augmented manifest); found {found or 'nothing'}"
    )
