"""Train one run: python -m experiments.train --config configs/gpt.py:VARIANT --workdir DIR."""

from experiments import cli  # noqa: F401  (sets quiet logging before jax loads)

from absl import flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", "configs/gpt.py:tiny", "Run config.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (resumed if it holds the run); "
                               "required unless --dry_run.")
_COORDINATOR = flags.DEFINE_string("coordinator", "127.0.0.1:12355", "Multi-host coordinator.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 1, "Multi-host: number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", 0, "Multi-host: this process's index.")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show a progress bar.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Compile the train step for the configured mesh "
                             "and print per-device memory and FLOPs; no training, no workdir.")


def main(argv):
    del argv
    cli.maybe_initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    if _DRY_RUN.value:
        from research import preflight
        print(preflight.format_report(preflight.run(_CONFIG.value)))
        return
    if not _WORKDIR.value:
        cli.fail("--workdir is required; name the run directory (or pass --dry_run)")
    from research import train as train_lib

    logging.set_verbosity(logging.WARNING)
    result = train_lib.train(_CONFIG.value, _WORKDIR.value, progress=_PROGRESS.value)
    if result["status"] != "done":
        cli.fail(f"run {result['status']} after {result['steps']} steps "
                 "(loss became NaN/Inf); lower --config.train.learning_rate", code=1)
    print(f"done: loss {result['loss']:.4f} ± {result['loss_stderr']:.4f} nats/token "
          f"({result['bits_per_byte']:.3f} bits/byte), {result['tokens']:,} tokens, "
          f"{result['flops']:.3g} FLOPs, {result['wall_s']:.0f}s -> {_WORKDIR.value}/result.json")


if __name__ == "__main__":
    cli.run_main(main)
