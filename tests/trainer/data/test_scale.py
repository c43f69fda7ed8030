"""Data sets larger than the file-descriptor limit, streaming with per-batch checks, failing
workers, and `.idx` files that are missing or stale: the real-scale behaviour, on small files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from trainer.data import DataConfig, RecordReader, RecordWriter, build_loaders
from trainer.data.decoding import ImageStore, pack, unpack
from trainer.errors import DataError
from trainer.hyperparameters import parse_hyperparameters
from trainer.notices import Notice

REPEATS = 25  # 200 committed training records -> 5,000 images


def _hp(**values: object):
    base = {
        "num_classes": 10,
        "num_training_samples": 200 * REPEATS,
        "image_shape": "3,8,8",
        "resize": 8,
        "num_layers": 20,
        "mini_batch_size": 250,
        "epochs": 1,
        "augmentation_type": "crop",
    }
    return parse_hyperparameters({**base, **values})


def _replicate(assets: Path, root: Path, repeats: int) -> Path:
    """A RecordIO data set of `repeats` copies of the committed real CIFAR records."""
    source = assets / "recordio" / "cifar10"
    for channel, times in (("train", repeats), ("validation", 1)):
        reader = RecordReader(source / channel / f"cifar10-{channel}.rec")
        with RecordWriter(root / channel / "x.rec", root / channel / "x.idx") as writer:
            for _ in range(times):
                for n in range(len(reader)):
                    writer.write(reader.read(n))
    return root


@pytest.fixture(scope="module")
def big(assets: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _replicate(assets, tmp_path_factory.mktemp("big"), REPEATS)


_TRAIN_UNDER_LIMIT = textwrap.dedent(
    """
    import resource, sys
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    import torch
    torch.set_num_threads(1)
    from trainer.data import DataConfig
    from trainer.hyperparameters import parse_hyperparameters
    from trainer.loop import fit
    hp = parse_hyperparameters(dict(
        num_classes=10, num_training_samples=5000, image_shape="3,8,8", resize=8,
        num_layers=20, mini_batch_size=250, epochs=1, augmentation_type="crop"))
    cache = int(sys.argv[2])
    result = fit(hp, DataConfig(sys.argv[1], cache_bytes=cache), sys.argv[3], log=print)
    print("images", result.history[-1]["epoch"], int(5000))
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("cache_bytes", [1 << 30, 0], ids=["cached", "streamed"])
def test_5000_images_train_under_a_256_descriptor_limit(
    big: Path, tmp_path: Path, cache_bytes: int
) -> None:
    """One descriptor per decoded image crashed at a few thousand images (`received 0 items of
    ancdata`) and hung under 256; now descriptors are per batch, bounded by the queue."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[3])}
    done = subprocess.run(
        [sys.executable, "-c", _TRAIN_UNDER_LIMIT, str(big), str(cache_bytes), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "epoch 1/1 " in done.stdout
    assert ("cached in memory" if cache_bytes else "streamed") in done.stdout
    assert (tmp_path / "model.tar.gz").is_file()


def test_streamed_epoch_starts_without_reading_every_image(big: Path, tmp_path: Path) -> None:
    """Sizes are checked per batch: a too-small image in the middle is found by the epoch that
    decodes it, named, after the batches before it were delivered."""
    root = tmp_path
    source = RecordReader(big / "train" / "x.rec", big / "train" / "x.idx")
    small = _tiny_jpeg()
    with RecordWriter(root / "train" / "x.rec", root / "train" / "x.idx") as writer:
        for n in range(600):
            payload = source.read(n)
            if n == 450:
                payload = payload[:24] + small  # same header and label, a 4x4 image
            writer.write(payload)
    (root / "validation").mkdir()
    for name in ("x.rec", "x.idx"):
        (root / "validation" / name).write_bytes((big / "validation" / name).read_bytes())
    hp = _hp(num_training_samples=600, resize=None, image_shape="3,28,28", mini_batch_size=100)
    loaders = build_loaders(hp, DataConfig(root, cache_bytes=0), seed=0)  # no image decoded yet
    loaders.train.shuffle = False
    delivered = 0
    with pytest.raises(DataError, match=r"x\.rec, record 450: image is 4x4 .* smaller than"):
        for images, _ in loaders.train:
            assert images.shape[1:] == (3, 28, 28)
            delivered += len(images)
    assert delivered == 400


def _tiny_jpeg() -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 10, 10)).save(out, format="JPEG")
    return out.getvalue()


def test_corrupt_image_in_a_streamed_set_fails_that_epoch_and_writes_nothing(
    big: Path, tmp_path: Path
) -> None:
    from trainer.loop import fit

    root = tmp_path / "data"
    source = RecordReader(big / "train" / "x.rec", big / "train" / "x.idx")
    with RecordWriter(root / "train" / "x.rec", root / "train" / "x.idx") as writer:
        for n in range(400):
            payload = source.read(n)
            writer.write(payload[:300] if n == 333 else payload)  # cut inside the JPEG
    (root / "validation").mkdir()
    for name in ("x.rec", "x.idx"):
        (root / "validation" / name).write_bytes((big / "validation" / name).read_bytes())
    hp = _hp(num_training_samples=400, image_shape="3,28,28", resize=None, epochs=2)
    out = tmp_path / "out"
    with pytest.raises(DataError, match=r"x\.rec, record 333: (cannot decode|not a readable)"):
        fit(hp, DataConfig(root, cache_bytes=0), out, log=lambda _: None)
    assert not out.exists() or not any(out.iterdir())


def test_a_killed_worker_ends_the_epoch_with_an_error_naming_it(big: Path) -> None:
    """A worker killed mid-epoch (as the OOM killer does) is noticed within seconds."""
    loaders = build_loaders(_hp(mini_batch_size=50), DataConfig(big, cache_bytes=0), seed=0)
    if not loaders.train.settings.get("num_workers"):
        pytest.skip("one core: batches are decoded in this process, there is no worker to kill")
    batches = iter(loaders.train)
    next(batches)
    children = _children(os.getpid())
    assert children, "a DataLoader worker should be running"
    for pid in children:
        os.kill(pid, signal.SIGKILL)
    start = time.monotonic()
    with pytest.raises(
        DataError, match=r"worker process: .*(killed by signal|exited unexpectedly)"
    ):
        for _ in batches:
            pass
    assert time.monotonic() - start < 60  # not a hang: the loader polls its workers every 5 s


def _children(pid: int) -> list[int]:
    """Forked children with this process's command line: the DataLoader's workers (not, say,
    the processes of a Ray started earlier in the session)."""
    ours = Path(f"/proc/{pid}/cmdline").read_bytes()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid and cmdline == ours:
                found.append(int(entry.name))
    return found


def test_a_rec_without_idx_is_read_with_one_notice(big: Path, tmp_path: Path) -> None:
    root = tmp_path / "data"
    for channel in ("train", "validation"):
        (root / channel).mkdir(parents=True)
        (root / channel / "x.rec").write_bytes((big / channel / "x.rec").read_bytes())
    with pytest.warns(Notice, match=r"train/x\.rec has no \.idx beside it"):
        loaders = build_loaders(_hp(), DataConfig(root), seed=0)
    assert loaders.num_train == 5000


def test_a_stale_idx_of_a_since_grown_rec_is_named(big: Path, tmp_path: Path) -> None:
    root = tmp_path / "data"
    for channel in ("train", "validation"):
        (root / channel).mkdir(parents=True)
        for name in ("x.rec", "x.idx"):
            (root / channel / name).write_bytes((big / channel / name).read_bytes())
    with (root / "train" / "x.rec").open("ab") as f:  # records appended, index not rebuilt
        f.write((big / "validation" / "x.rec").read_bytes())
    with pytest.raises(DataError, match=r"x\.idx lists 5000 records, but .* does not belong"):
        build_loaders(_hp(), DataConfig(root), seed=0)


def test_reader_opens_its_file_once_per_process(big: Path) -> None:
    reader = RecordReader(big / "train" / "x.rec", big / "train" / "x.idx")
    before = len(os.listdir("/proc/self/fd"))
    labels = [reader.read_labels(n) for n in range(len(reader))]
    images = [reader.read_image(n) for n in range(0, len(reader), 97)]
    assert len(os.listdir("/proc/self/fd")) <= before + 1
    assert all(im.labels == labels[n * 97] for n, im in enumerate(images))


def test_pack_and_store_keep_mixed_sizes_in_one_buffer() -> None:
    images = [torch.randint(0, 256, (3, h, w), dtype=torch.uint8) for h, w in ((5, 7), (9, 4))]
    pixels, shapes = pack(images)
    assert pixels.shape == (3 * 35 + 3 * 36,) and shapes.tolist() == [[3, 5, 7], [3, 9, 4]]
    back = unpack(pixels, shapes)
    assert isinstance(back, list)
    assert all(torch.equal(a, b) for a, b in zip(back, images, strict=True))
    same = unpack(*pack([images[0], images[0]]))
    assert isinstance(same, torch.Tensor) and same.shape == (2, 3, 5, 7)
    offsets = torch.tensor([0, 105, 213])
    store = ImageStore(pixels, offsets, shapes)
    assert store.dense is None and store.nbytes == 213
    taken = store.take(torch.tensor([1, 0]))
    assert torch.equal(taken[0], images[1]) and torch.equal(taken[1], images[0])


def test_decode_progress_is_silent_for_short_work(big: Path, capfd: pytest.CaptureFixture) -> None:
    build_loaders(_hp(), DataConfig(big), seed=0)
    captured = capfd.readouterr()
    assert captured.out == "" and "decoding" not in captured.err
