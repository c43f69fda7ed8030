#!/usr/bin/env python3
"""MXNet 1.9.1 reference run of ``example/image-classification/train_cifar10.py``.

Run this with the *MXNet* virtual environment's python, not the project's:

    python3 -m venv /work/mxnet-venv
    /work/mxnet-venv/bin/pip install mxnet==1.9.1 'numpy<1.24'
    git -C /work/.mirror/apache+mxnet/repo archive 1.9.1 example/image-classification \
        | tar -x -C /tmp && mv /tmp/example/image-classification /work/mxnet-example
    /work/mxnet-venv/bin/python benchmarks/mxnet_reference.py \
        --train /work/shared/data/mxnet-recordio/cifar10-train.rec \
        --val /work/shared/data/mxnet-recordio/cifar10-validation.rec --num-epochs 1 --max-batches 60

It imports nothing from this project and not torch.  It is train_cifar10.py minus
``download_cifar10()`` (no internet): the same argument groups
(``common.fit.add_fit_args``, ``common.data.add_data_args``/``add_data_aug_args``), the
same ``parser.set_defaults`` block, ``symbols.resnet.get_symbol(**vars(args))`` and the
unmodified ``common.fit.fit(args, sym, data.get_rec_iter)``, so kvstore ('device', which
for one CPU context means no kvstore, same as 'local'), Xavier(rnd_type='gaussian',
factor_type='in', magnitude=2), SGD(momentum=--mom, wd=--wd, multi_precision) and the
MultiFactorScheduler(step=epoch_size*lr_step_epochs, factor=--lr-factor) are MXNet's own.
Only these things are added, none of which changes the training math:

* defaults changed to the benchmark's setting: ResNet-20, 45,000 examples, lr 0.1,
  lr steps 10,20, 30 epochs, --random-crop 1 --random-mirror 1 (train_cifar10.py leaves
  both at 0, i.e. a centre crop and no flip, unless set_cifar_aug() is uncommented);
  --train/--val are aliases of --data-train/--data-val.
* ``--data-train-idx``/``--data-val-idx`` default to the ``.idx`` beside the ``.rec``
  (``--no-auto-idx`` turns that off).  Without an index ImageRecordIter only shuffles
  inside each chunk it reads, and the shared .rec files are sorted by class, so batches
  would be nearly single-class.  With an index it reshuffles all records every epoch.
* ``--max-batches N`` wraps the training iterator in ``mx.io.ResizeIter(train, N)`` (an
  epoch stops after N batches; validation is still the whole set; the LR schedule still
  counts epoch_size = ceil(num_examples / batch_size) updates per epoch).
* timing is read from fit.fit without changing it: a batch_end_callback (fit.fit accepts
  one through kwargs, next to its Speedometer) records the first batch and the batch
  count, and a logging handler reads Module.fit's own ``Epoch[E] Train-accuracy``,
  ``Epoch[E] Time cost`` (the epoch's training loop, tic to toc, without validation)
  and ``Epoch[E] Validation-accuracy`` records.

Threads: for CPU training MXNet runs each operator with OpenMP threads on
MXNET_CPU_WORKER_NTHREADS engine workers (default 1), and ImageRecordIter decodes JPEGs on
its own ``preprocess_threads`` (--data-nthreads) while training runs.  Unless they are
already set in the environment this script sets OMP_NUM_THREADS=os.cpu_count() and leaves
MXNET_CPU_WORKER_NTHREADS at MXNet's default 1 (what a user gets with no settings: every
core for the convolutions).  --data-nthreads keeps train_cifar10's 4, but ImageRecordIter
itself caps it at max(cpu_count - 1, 1), i.e. 1 decoding thread on a 2-core machine
(it logs "use 1 threads for decoding").

Machine-readable lines, on stdout (MXNet's own logging goes to stderr):

    mxnet config ...
    mxnet first_batch_seconds=S        (process start -> first training batch finished)
    mxnet epoch E train_seconds=S images_per_second=X train_accuracy=A [validation_accuracy=V]
    mxnet total_seconds=T              (process start -> end)
"""

import os
import sys
import time


def _process_start_time():
    """Wall-clock time when this process was exec'd (Linux /proc); else now."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        start_ticks = float(fields[19])  # field 22 "starttime", clock ticks since boot
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        age = uptime - start_ticks / os.sysconf("SC_CLK_TCK")
        if 0 <= age < 600:
            return time.time() - age
    except Exception:  # pragma: no cover - non-Linux
        pass
    return time.time()


T0 = _process_start_time()

import argparse  # noqa: E402
import logging  # noqa: E402

NCPU = os.cpu_count() or 1
# Must be set before mxnet is imported.
os.environ.setdefault("OMP_NUM_THREADS", str(NCPU))
os.environ.setdefault("MXNET_CPU_WORKER_NTHREADS", "1")


def emit(line):
    sys.stdout.write("mxnet " + line + "\n")
    sys.stdout.flush()


def main():
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--example-dir", default="/work/mxnet-example")
    pre_args, _ = pre.parse_known_args()
    example_dir = os.path.abspath(pre_args.example_dir)
    if not os.path.isfile(os.path.join(example_dir, "common", "fit.py")):
        sys.exit(f"no common/fit.py under --example-dir {example_dir}")
    sys.path.insert(0, example_dir)

    # exactly train_cifar10.py's imports and logging set-up
    logging.basicConfig(level=logging.DEBUG)
    import mxnet as mx
    from common import data, find_mxnet, fit  # noqa: F401

    parser = argparse.ArgumentParser(
        description="train cifar10 (MXNet train_cifar10.py without the download)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    fit.add_fit_args(parser)
    data.add_data_args(parser)
    data.add_data_aug_args(parser)
    extra = parser.add_argument_group("mxnet_reference.py")
    extra.add_argument(
        "--example-dir",
        default="/work/mxnet-example",
        help="export of example/image-classification at tag 1.9.1",
    )
    extra.add_argument("--train", dest="data_train", help="alias of --data-train")
    extra.add_argument("--val", dest="data_val", help="alias of --data-val")
    extra.add_argument(
        "--max-batches",
        type=int,
        default=0,
        help="stop each training epoch after N batches (0: whole epoch)",
    )
    extra.add_argument(
        "--no-auto-idx",
        action="store_true",
        help="don't use the .idx beside a .rec (train_cifar10.py's behaviour)",
    )
    # train_cifar10.py's set_defaults block, data files excepted
    parser.set_defaults(
        network="resnet",
        num_layers=110,
        num_classes=10,
        num_examples=50000,
        image_shape="3,28,28",
        pad_size=4,
        batch_size=128,
        num_epochs=300,
        lr=0.05,
        lr_step_epochs="200,250",
    )
    # this benchmark's defaults
    parser.set_defaults(
        num_layers=20,
        num_examples=45000,
        lr=0.1,
        lr_step_epochs="10,20",
        num_epochs=30,
        random_crop=1,
        random_mirror=1,
    )
    args = parser.parse_args()
    if not args.data_train:
        parser.error("--train (or --data-train) is required")
    if not args.no_auto_idx:
        for rec, key in ((args.data_train, "data_train_idx"), (args.data_val, "data_val_idx")):
            idx = os.path.splitext(rec)[0] + ".idx" if rec else ""
            if rec and not getattr(args, key) and os.path.isfile(idx):
                setattr(args, key, idx)

    emit(
        "config mxnet_version=%s omp_num_threads=%s mxnet_cpu_worker_nthreads=%s "
        "data_nthreads=%d num_layers=%d batch_size=%d image_shape=%s pad_size=%d "
        "random_crop=%d random_mirror=%d rgb_mean=%s rgb_std=%s train_idx=%s"
        % (
            mx.__version__,
            os.environ["OMP_NUM_THREADS"],
            os.environ["MXNET_CPU_WORKER_NTHREADS"],
            args.data_nthreads,
            args.num_layers,
            args.batch_size,
            args.image_shape,
            args.pad_size,
            args.random_crop,
            args.random_mirror,
            args.rgb_mean,
            args.rgb_std,
            args.data_train_idx or "-",
        )
    )

    # load network (as train_cifar10.py)
    from importlib import import_module

    net = import_module("symbols." + args.network)
    sym = net.get_symbol(**vars(args))

    def data_loader(a, kv):
        train, val = data.get_rec_iter(a, kv)
        if a.max_batches > 0:
            train = mx.io.ResizeIter(train, a.max_batches)
        return train, val

    state = {"first": None, "nbatch": {}, "epoch": {}}

    def on_batch(param):
        if state["first"] is None:
            mx.nd.waitall()  # once: make the first batch really finished
            state["first"] = time.time() - T0
            emit("first_batch_seconds={:.3f}".format(state["first"]))
        state["nbatch"][param.epoch] = param.nbatch + 1

    has_val = bool(args.data_val)

    def report(epoch):
        e = state["epoch"].pop(epoch)
        secs = e["time"]
        n = state["nbatch"].get(epoch, 0) * args.batch_size
        line = "epoch %d train_seconds=%.3f images_per_second=%.1f train_accuracy=%.6f" % (
            epoch,
            secs,
            n / secs if secs > 0 else 0.0,
            e.get("train", float("nan")),
        )
        if has_val:
            line += " validation_accuracy={:.6f}".format(e["val"])
        emit(line)

    class EpochLog(logging.Handler):
        """Reads Module.fit's own per-epoch log records."""

        def emit(self, record):
            try:
                msg, a = record.msg, record.args
                if not isinstance(msg, str) or not msg.startswith("Epoch[%d] ") or not a:
                    return
                e = state["epoch"].setdefault(a[0], {})
                if msg == "Epoch[%d] Train-%s=%f" and a[1] == "accuracy":
                    e["train"] = a[2]
                elif msg == "Epoch[%d] Time cost=%.3f":
                    e["time"] = a[1]
                    if not has_val:
                        report(a[0])
                elif msg == "Epoch[%d] Validation-%s=%f" and a[1] == "accuracy":
                    e["val"] = a[2]
                    report(a[0])
            except Exception as exc:  # never break training over a report line
                sys.stderr.write(f"mxnet_reference: report failed: {exc!r}\n")

    logging.getLogger().addHandler(EpochLog())

    fit.fit(args, sym, data_loader, batch_end_callback=on_batch)
    emit("total_seconds=%.3f" % (time.time() - T0))


if __name__ == "__main__":
    main()
