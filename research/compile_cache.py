"""JAX's persistent compilation cache, on by default for training.

Compiled steps are kept on disk across processes and runs: a resumed, retried or same-shape run
(the schedule is an input of the step, so every budget of one shape is the same program) loads
its executable instead of compiling it. The cache lives in JAX_COMPILATION_CACHE_DIR when that is
set, else ~/.cache/scaling_lab/jax-cache. Every compile is cached, however quick (min compile
time 0), unless JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS says otherwise.
CPU executables are cached too (jax 0.10).
"""

from __future__ import annotations

import logging
import os

import jax

log = logging.getLogger(__name__)

DEFAULT_DIR = os.path.join("~", ".cache", "scaling_lab", "jax-cache")


def enable(default_dir: str = DEFAULT_DIR) -> str | None:
    """Turn the persistent cache on (idempotent); returns its directory, None if unusable."""
    path = jax.config.jax_compilation_cache_dir or os.path.expanduser(default_dir)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:  # a read-only home: train without the cache rather than fail
        log.warning("compilation cache %s unusable (%s); compiling every run", path, e)
        return None
    if jax.config.jax_compilation_cache_dir != path:
        jax.config.update("jax_compilation_cache_dir", path)
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return path
