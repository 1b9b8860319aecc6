"""What this process sees: python -m experiments.devices

Prints the multi-host detection (Slurm step, TPU pod, or single process), the platform, the
devices, the process count, and the per-device peak that MFU is quoted against (and its source).
Run it under `srun` or on every TPU host to check a cluster before submitting a sweep.
"""

from experiments import cli  # noqa: F401  (sets quiet logging before jax loads)

import collections

PROG = "python -m experiments.devices"


def build_parser() -> cli.ArgumentParser:
    return cli.parser(PROG, __doc__)


def main(argv) -> int:
    cli.parse(build_parser(), argv, allow_overrides=False)
    from research import distributed

    found = distributed.initialize()
    import jax

    from research import peaks

    devices = jax.devices()
    kinds = collections.Counter(d.device_kind for d in devices)
    peak = peaks.device_peak(jax.local_devices()[0])
    print(f"distributed: {found.describe()}")
    print(f"platform: {jax.default_backend()} (jax {jax.__version__})")
    print(f"processes: {jax.process_count()} (this is process {jax.process_index()})")
    print(f"devices: {len(devices)} in all, {jax.local_device_count()} local: "
          + ", ".join(f"{n} x {k}" for k, n in kinds.items()))
    print(f"MFU peak: {peak.per_device / 1e12:.3g} TFLOP/s per device x {len(devices)} = "
          f"{peak.of_mesh(len(devices)) / 1e12:.3g} TFLOP/s; source: {peak.source}")
    return 0


if __name__ == "__main__":
    cli.run(main)
