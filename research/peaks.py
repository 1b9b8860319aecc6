"""Peak FLOP/s for MFU: vendor dense bf16 figures per accelerator, a measured matmul on CPU.

MFU = model FLOP/s of the whole mesh / (per-device peak x devices in the mesh). Accelerators use
the vendor's dense (no 2:4 sparsity) bf16 tensor-core / MXU peak, the figure MFU is quoted
against in the literature; an unknown accelerator falls back to a measured bf16 matmul and says so.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp

# (match in device_kind, lower case; name; dense bf16 FLOP/s per device; vendor source).
# Order matters: the first match wins ("v5 lite" before "v5", "pcie" before plain "h100").
TABLE = (
    ("h200", "NVIDIA H200 SXM", 989e12,
     "NVIDIA H200 datasheet: 1,979 TFLOPS bf16 with sparsity, 989 dense"),
    ("h100 pcie", "NVIDIA H100 PCIe", 756e12,
     "NVIDIA H100 datasheet: 1,513 TFLOPS bf16 with sparsity (PCIe), 756 dense"),
    ("h100", "NVIDIA H100 SXM", 989e12,
     "NVIDIA H100 datasheet: 1,979 TFLOPS bf16 with sparsity (SXM), 989 dense"),
    ("a100", "NVIDIA A100", 312e12,
     "NVIDIA A100 datasheet: 312 TFLOPS bf16 dense (624 with sparsity)"),
    ("tpu v4", "TPU v4", 275e12, "Google Cloud TPU v4 docs: 275 TFLOPS bf16 per chip"),
    ("tpu v5 lite", "TPU v5e", 197e12, "Google Cloud TPU v5e docs: 197 TFLOPS bf16 per chip"),
    ("tpu v5e", "TPU v5e", 197e12, "Google Cloud TPU v5e docs: 197 TFLOPS bf16 per chip"),
    ("tpu v5", "TPU v5p", 459e12, "Google Cloud TPU v5p docs: 459 TFLOPS bf16 per chip"),
    ("tpu v6", "TPU v6e (Trillium)", 918e12,
     "Google Cloud TPU v6e docs: 918 TFLOPS bf16 per chip"),
)


@dataclasses.dataclass(frozen=True)
class Peak:
    per_device: float  # FLOP/s
    source: str  # where the number comes from, for the bench output

    def of_mesh(self, n_devices: int) -> float:
        return self.per_device * n_devices


def table_peak(device_kind: str) -> Peak | None:
    kind = device_kind.lower()
    for match, name, flops, source in TABLE:
        if match in kind:
            return Peak(flops, f"{name} dense bf16 ({source})")
    return None


def matmul_peak_flops(n: int = 1024, repeats: int = 20, dtype=jnp.float32, device=None) -> float:
    """Best-of FLOP/s of a jitted n x n x n matmul on one device."""
    device = device or jax.devices()[0]
    a = jax.device_put(jnp.ones((n, n), dtype), device)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        f(a).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best


def device_peak(device=None) -> Peak:
    """The per-device peak MFU is quoted against on this platform."""
    device = device or jax.devices()[0]
    if device.platform == "cpu":
        # XLA on CPU gains nothing from bf16: the f32 matmul is the honest ceiling.
        flops = matmul_peak_flops(device=device)
        return Peak(flops, f"measured f32 {1024}^3 matmul on one {device.device_kind} device")
    known = table_peak(device.device_kind)
    if known is not None:
        return known
    flops = matmul_peak_flops(4096, 10, jnp.bfloat16, device)
    return Peak(flops, f"measured bf16 4096^3 matmul on one {device.device_kind!r} "
                       "(not in research/peaks.py TABLE)")
