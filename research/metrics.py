"""Metrics and progress: JSONL (the source of truth), TensorBoard event files and, optionally,
Weights & Biases (for people); a progress bar on a terminal, periodic lines in a log file.

W&B is used only when the config says `log.wandb=True`, and needs `pip install wandb` (it is not
a requirement). It logs the same scalars as the JSONL, under the run's name, into the run
directory (`wandb/`); the run id is kept there so a resumed run continues the same W&B run.
`WANDB_MODE=offline` keeps it off the network (`wandb sync RUN_DIR/wandb/offline-run-*` later).
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid

from research.config import RunConfig
from research.errors import ConfigError

PROGRESS_EVERY_S = 30.0  # a log file gets one progress line per this many seconds


def wandb_settings(cfg: RunConfig) -> dict | None:
    """The `log.*` keys of a run config as W&B settings, or None when W&B is off."""
    log = cfg.log
    if not log.wandb:
        return None
    return {"project": log.wandb_project or None, "entity": log.wandb_entity or None,
            "group": log.wandb_group or None}


def check_tracking(cfg: RunConfig) -> None:
    """Refuse `log.wandb=True` without wandb installed, before anything runs."""
    if wandb_settings(cfg) is not None and not _wandb_installed():
        raise ConfigError("log.wandb=True but wandb is not installed; pip install wandb, or "
                          "drop --config.log.wandb")


def _wandb_installed() -> bool:
    import importlib.util

    if "wandb" in sys.modules:  # already imported (or marked missing with None)
        return sys.modules["wandb"] is not None
    return importlib.util.find_spec("wandb") is not None


class MetricsWriter:
    """Writes each step's scalars to every sink. Only the writer process (index 0) is enabled."""

    def __init__(self, workdir: str, enabled: bool = True, *, config=None, wandb: dict | None = None):
        self.enabled = enabled
        self._jsonl = self._tb = self._wandb = None
        if not enabled:
            return
        self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
        from tensorboardX import SummaryWriter  # imported lazily: slow, and only for writers
        self._tb = SummaryWriter(os.path.join(workdir, "tb"))
        if wandb is not None:
            self._wandb = _start_wandb(workdir, wandb, config)

    def write(self, step: int, scalars: dict) -> None:
        if not self.enabled:
            return
        # Counts (tokens) stay integers in metrics.jsonl; everything else is a float.
        values = {k: v if isinstance(v, int) else float(v) for k, v in scalars.items()}
        self._jsonl.write(json.dumps({"step": int(step), **values}) + "\n")
        self._jsonl.flush()
        for k, v in values.items():
            self._tb.add_scalar(k, v, int(step))
        if self._wandb is not None:
            self._wandb.log(values, step=int(step))

    def close(self) -> None:
        """Close every sink, even when one fails (a full disk), then raise the first error."""
        if not self.enabled:
            return
        self.enabled = False
        closers = [self._jsonl.close, lambda: _close_tensorboard(self._tb)]
        if self._wandb is not None:
            closers.append(self._wandb.finish)
        first = None
        for close in closers:
            try:
                close()
            except OSError as e:
                first = first or e
        if first is not None:
            raise first


def _close_tensorboard(tb) -> None:
    """tensorboardX flushes before it stops its writer thread; when that flush fails (disk
    full) the thread and an atexit hook stay behind and print tracebacks at exit. Stop them and
    mark the writers closed, then let the error through once."""
    try:
        tb.close()
    except OSError:
        for file_writer in list(getattr(tb, "all_writers", {}).values()):
            events = file_writer.event_writer
            worker, events._closed = getattr(events, "_worker", None), True
            if worker is not None:
                worker.stop()
        raise


def _start_wandb(workdir: str, settings: dict, config):
    try:
        import wandb
    except ImportError:
        raise ConfigError("log.wandb=True but wandb is not installed; pip install wandb, or "
                          "drop --config.log.wandb") from None
    state = os.path.join(workdir, "wandb")
    os.makedirs(state, exist_ok=True)
    id_file = os.path.join(state, "run_id")
    if os.path.exists(id_file):  # a resumed run continues its W&B run
        with open(id_file) as f:
            run_id = f.read().strip()
    else:
        run_id = uuid.uuid4().hex[:16]
        with open(id_file, "w") as f:
            f.write(run_id + "\n")
    as_dict = config.to_dict() if config is not None else None
    return wandb.init(project=settings["project"], entity=settings["entity"], dir=workdir,
                      id=run_id, name=os.path.basename(os.path.abspath(workdir)),
                      group=settings.get("group"), resume="allow", config=as_dict)


# --- progress -----------------------------------------------------------------------------------

def progress(total: int, initial: int = 0, enabled: bool = True, stream=None,
             every_s: float = PROGRESS_EVERY_S, clock=time.monotonic):
    """A tqdm bar when `stream` (stderr) is a terminal; otherwise a line every `every_s` seconds
    (a sweep child's log file gets readable lines, not carriage-return bar redraws)."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    if enabled and isatty is not None and isatty():
        from tqdm import tqdm
        return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, mininterval=1.0,
                    file=stream)
    return ProgressLines(total, initial, enabled, stream, every_s, clock)


class ProgressLines:
    """tqdm's update / set_postfix / close, printed as plain periodic lines:
    `step 120/1024 (12%) loss=2.345 tok_s=12,345 | 1m02s, ETA 7m30s`."""

    def __init__(self, total, initial, enabled, stream, every_s, clock):
        self.total, self.n, self.enabled = int(total), int(initial), enabled
        self.stream, self.every_s, self.clock = stream, float(every_s), clock
        self.postfix: dict = {}
        self.t0 = clock()
        self._first = None  # (time, step) after the first step: compilation is behind us
        self._last_print = None
        self._printed_n = None

    def set_postfix(self, **kwargs) -> None:
        self.postfix = kwargs

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self.clock()
        if self._first is None:
            self._first = (now, self.n)
            self._emit(now)
        elif now - self._last_print >= self.every_s:
            self._emit(now)

    def close(self) -> None:
        if self._printed_n != self.n and self._first is not None:
            self._emit(self.clock())

    def _emit(self, now) -> None:
        self._last_print, self._printed_n = now, self.n
        if not self.enabled:
            return
        parts = [f"step {self.n}/{self.total} ({100 * self.n / max(self.total, 1):.0f}%)"]
        parts += [f"{k}={v}" for k, v in self.postfix.items()]
        timing = f"{_duration(now - self.t0)}"
        t_first, n_first = self._first
        if self.n > n_first and self.n < self.total:
            eta = (now - t_first) / (self.n - n_first) * (self.total - self.n)
            timing += f", ETA {_duration(eta)}"
        print(" ".join(parts) + " | " + timing, file=self.stream, flush=True)


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"
