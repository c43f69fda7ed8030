"""precision_dtype=float16: fp16 + scaling on CUDA, bf16 only on CPUs that compute it natively."""

from __future__ import annotations

import torch

from trainer.precision import (
    cpu_capability,
    cpu_flags,
    cpu_has_native_bf16,
    native_bf16,
    resolve_device,
    resolve_precision,
)

CPU = torch.device("cpu")


def test_float32_never_autocasts() -> None:
    for device in (CPU, torch.device("cuda")):
        precision = resolve_precision("float32", device)
        assert (precision.autocast_dtype, precision.grad_scaling, precision.notice) == (
            None,
            False,
            None,
        )


def test_float16_on_cuda_is_fp16_autocast_with_grad_scaling() -> None:
    precision = resolve_precision("float16", torch.device("cuda"))
    assert (precision.autocast_dtype, precision.grad_scaling) == (torch.float16, True)
    assert precision.name == "float16"


def test_float16_on_a_cpu_with_native_bf16_is_bf16_autocast() -> None:
    precision = resolve_precision("float16", CPU, cpu_bf16=True)
    assert (precision.autocast_dtype, precision.grad_scaling, precision.notice) == (
        torch.bfloat16,
        False,
        None,
    )
    with precision.autocast():
        out = torch.nn.Linear(4, 2)(torch.ones(1, 4))
    assert out.dtype == torch.bfloat16
    assert not precision.grad_scaler().is_enabled()


def test_float16_on_a_cpu_without_native_bf16_falls_back_to_float32_with_a_notice() -> None:
    precision = resolve_precision("float16", CPU, cpu_bf16=False)
    assert (precision.autocast_dtype, precision.name) == (None, "float32")
    assert precision.notice is not None and "training in float32" in precision.notice
    assert "\n" not in precision.notice


def test_native_bf16_detection_reads_the_cpu_flags() -> None:
    assert native_bf16({"avx2", "avx512_bf16"}, "AVX512")
    assert native_bf16({"amx_bf16"}, "AVX512")
    assert native_bf16(set(), "AMX")
    assert not native_bf16({"avx2", "fma"}, "AVX2")
    assert cpu_has_native_bf16() == native_bf16(
        cpu_flags(), torch.backends.cpu.get_cpu_capability()
    )
    assert cpu_capability().startswith(torch.backends.cpu.get_cpu_capability())
    assert ("avx512_bf16" in cpu_capability()) == ("avx512_bf16" in cpu_flags())


def test_device_defaults_to_cuda_when_available() -> None:
    assert resolve_device("cpu") == CPU
    assert resolve_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
