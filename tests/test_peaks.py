"""MFU peaks: the vendor table on accelerators, a measured matmul on CPU, times the mesh size."""

import jax
import pytest

from configs import gpt
from research import bench, peaks
from research.config import RunConfig


@pytest.mark.parametrize("kind, tflops", [
    ("NVIDIA H100 80GB HBM3", 989), ("NVIDIA H100 PCIe", 756), ("NVIDIA H200", 989),
    ("NVIDIA A100-SXM4-80GB", 312), ("TPU v4", 275), ("TPU v5 lite", 197), ("TPU v5e", 197),
    ("TPU v5", 459), ("TPU v5p", 459), ("TPU v6 lite", 918)])
def test_table_has_vendor_dense_bf16_peaks(kind, tflops):
    peak = peaks.table_peak(kind)
    assert peak.per_device == tflops * 1e12 and "bf16" in peak.source


def test_unknown_kind_is_not_guessed():
    assert peaks.table_peak("cpu") is None and peaks.table_peak("NVIDIA T4") is None


@pytest.mark.slow
def test_bench_on_8_devices_divides_by_8_device_peaks():
    assert jax.device_count() == 8
    c = gpt.get_config("100k")
    c.model.context_length, c.train.batch_size = 32, 8
    out = bench.measure(RunConfig.from_configdict(c), steps=2)
    assert out["mesh_devices"] == 8
    assert out["peak_flops_per_s"] == pytest.approx(8 * out["peak_flops_per_s_per_device"])
    assert out["mfu"] == pytest.approx(out["model_flops_per_s"] / out["peak_flops_per_s"])
    assert 0 < out["mfu"] <= 1
    assert out["peak_source"].startswith("measured f32")
