"""The sweep runner: expand a sweep config into training runs, execute them, collect results.

Modules, one concern each:
  spec       load and check a sweep config file (configs/sweeps/*.py)
  plan       expand it into runs (grid, iso-FLOP, WSD parent/branches, seeds, or a preference
             sweep's points: experiments/preference_sweep.py), name them
  layout     where everything lives inside a sweep directory
  claims     per-run claim files: exactly one worker runs a run; dead workers' claims are taken over
  ledger     per-run event log (started / finished / failed) and the derived run state
  child      the process that trains one run (crash isolation)
  worker     the loop: pick a runnable run, claim it, run it in a child, record the outcome
  executors  local (k worker threads, each supervising child processes) and Slurm via submitit
  results    results.csv in the schema the analysis reads, rewritten atomically
  estimate   wall-time estimates from a short measured benchmark
  report     status table, progress line, the analysis step
"""
