"""Plots and report drawn by a second process that `analysis fit` does not wait for.

Drawing and saving the figures takes about as long as a warm fit. At a terminal the fit's
numbers are what the user waits for, so the CLI prints them as soon as fit.json is written
and leaves the figures, report.md and report.html to a detached child process
(`python -m analysis.background FILE`), which gets the fit through a pickle in the output
folder. The law travels as its recipe (name, x, base law) because a Law holds functions.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile

JOB_PREFIX = ".plots-"


def draw_later(fit: dict, out_dir: str, svg: bool, law_recipe: tuple) -> int:
    """Start the child that draws `fit`'s plots and report into out_dir; returns its pid."""
    data = dict(fit["_data"], law=None)
    job = dict(fit=dict(fit, _data=data), out_dir=out_dir, svg=svg, law=law_recipe)
    fd, path = tempfile.mkstemp(dir=out_dir, prefix=JOB_PREFIX, suffix=".pkl")
    with os.fdopen(fd, "wb") as fh:
        pickle.dump(job, fh)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (root, os.environ.get("PYTHONPATH")) if p))
    log = open(os.path.join(out_dir, "plots.log"), "wb")
    with log:  # the child's stderr, for a plot that failed
        child = subprocess.Popen([sys.executable, "-m", "analysis.background", path], env=env,
                                 stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                 start_new_session=True)  # outlives the command and its terminal
    return child.pid


def main(path: str) -> int:
    from .fit import _base_params
    from .laws import make_law
    from .pipeline import plots_and_report

    with open(path, "rb") as fh:
        job = pickle.load(fh)
    os.remove(path)
    name, x, base_law = job["law"]
    fit = job["fit"]
    fit["_data"]["law"] = make_law(name, x, base=_base_params(base_law))
    plots_and_report(fit, job["out_dir"], job["svg"])
    log = os.path.join(job["out_dir"], "plots.log")
    if os.path.isfile(log) and os.path.getsize(log) == 0:
        os.remove(log)  # nothing went wrong; a failed plot leaves its traceback there
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
