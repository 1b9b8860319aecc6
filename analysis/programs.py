"""Compiled fit programs kept on disk, so a warm `analysis fit` neither traces nor compiles.

JAX's persistent compilation cache only skips XLA's compilation: every process still traces
and lowers each function once per batch size, seconds of a fit that computes for about as
long. Here the compiled executable itself is serialised (jax.experimental.serialize_executable)
and stored under a key of everything that decides it: the function's name and static
arguments, the argument shapes and dtypes, the sources of this package, the JAX and jaxlib
versions, XLA_FLAGS, the device and the host CPU's features (an executable is compiled for
them). The same program runs either way, so results are identical with or without the store.

On disk only where ANALYSIS_PROGRAM_CACHE_DIR names a folder (the CLI sets it next to JAX's
cache) and for functions defined in this package (whose source the key covers); anything
else is compiled once per process, as plain `jax.jit` would.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import pickle
import tempfile
from pathlib import Path
from typing import Callable

import jax

ENV = "ANALYSIS_PROGRAM_CACHE_DIR"
_PACKAGE = __name__.rpartition(".")[0]
log = logging.getLogger(__name__)
_loaded: dict = {}  # key -> compiled program, for this process


def fingerprint(fn) -> str | None:
    """A stable name for `fn`, or None if it has none (a closure, a lambda, a foreign module).

    A function may carry its own as `fn.program_key` (a closure built from named parts)."""
    own = getattr(fn, "program_key", None)
    if own is not None:
        return own
    if isinstance(fn, functools.partial):
        parts = [fingerprint(fn.func)] + [_static_repr(a) for a in fn.args]
        if fn.keywords or None in parts:
            return None
        return f"partial({', '.join(parts)})"
    module, name = getattr(fn, "__module__", ""), getattr(fn, "__qualname__", "")
    if (getattr(fn, "__closure__", None) is None and (module or "").startswith(_PACKAGE + ".")
            and "<" not in name):
        return f"{module}.{name}"
    return None


def _static_repr(value) -> str | None:
    if isinstance(value, (bool, int, float, str, type(None))):
        return repr(value)
    if isinstance(value, tuple):
        parts = [_static_repr(v) for v in value]
        return None if None in parts else f"({', '.join(parts)},)"
    return fingerprint(value)


def call(name: str, static: tuple, fn: Callable, *args):
    """fn(*args), compiled for these argument shapes; `name` and `static` (hashable values
    and functions) must determine fn. From disk when a stored program matches."""
    avals = tuple(str(jax.typeof(a)) for a in jax.tree.leaves(args))
    tree = str(jax.tree.structure(args))
    parts = [_static_repr(s) for s in static]
    named = None not in parts
    key = (name, tuple(parts) if named else static, avals, tree, jax.config.jax_enable_x64)
    program = _loaded.get(key)
    if program is None:
        folder = os.environ.get(ENV)
        path = (Path(folder) / _environment() / (hashlib.sha256(repr(key).encode()).hexdigest()
                                                 + ".bin")) if folder and named else None
        program = _load(path) if path is not None else None
        if program is None:
            lowered = _lower(fn, args)
            program = _compile_fresh(lowered) if path is not None else None
            if program is not None:
                _store(path, program)
            else:
                program = lowered.compile()
        _loaded[key] = program
    return program(*args)


def _lower(fn, args):
    return jax.jit(fn).lower(*args)  # tracing and lowering: what a stored program saves


def _compile_fresh(lowered):
    """`lowered` compiled by XLA, not taken from JAX's persistent cache (None if that cannot
    be ensured): an executable loaded from there serialises without some of its kernels
    ("Function wrapped_broadcast not found" when the copy runs)."""
    from jax._src import compilation_cache as cache

    lock = getattr(cache, "_cache_initialized_mutex", None)
    if lock is None or not hasattr(cache, "_cache_used"):
        return None  # JAX's internals moved: compile normally and keep nothing on disk
    cache.is_cache_used(jax.devices()[0].client)  # settle JAX's once-per-process decision
    with lock:
        used = cache._cache_used
        cache._cache_used = False  # read by each compilation, which then skips the cache
    try:
        return lowered.compile()
    finally:
        with lock:
            cache._cache_used = used


def _load(path: Path):
    from jax.experimental import serialize_executable

    try:
        payload = pickle.loads(path.read_bytes())
        # On the one device jit compiled for (by default it would span every device).
        return serialize_executable.deserialize_and_load(*payload,
                                                         execution_devices=jax.devices()[:1])
    except FileNotFoundError:
        return None
    except Exception as e:  # a damaged or foreign file: compile again and replace it
        log.warning("program cache entry %s unreadable (%s); recompiling", path.name, e)
        return None


def _store(path: Path, program) -> None:
    from jax.experimental import serialize_executable

    try:
        payload = pickle.dumps(serialize_executable.serialize(program))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
        os.replace(tmp, path)  # atomic: a concurrent reader sees all of it or nothing
    except Exception as e:  # a read-only cache or an unserialisable program: just slower
        log.warning("program not cached (%s)", e)


@functools.lru_cache(maxsize=None)
def _environment() -> str:
    """Folder name: a hash of what every stored program depends on besides its own key."""
    import jaxlib

    h = hashlib.sha256()
    device = jax.devices()[0]
    for part in (jax.__version__, jaxlib.__version__, os.environ.get("XLA_FLAGS", ""),
                 device.platform, device.device_kind, _cpu_features()):
        h.update(str(part).encode() + b"\0")
    for source in sorted(Path(__file__).parent.glob("*.py")):
        h.update(source.name.encode() + b"\0" + source.read_bytes())
    return h.hexdigest()[:32]


def _cpu_features() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            return next((line for line in fh if line.startswith(("flags", "Features"))), "")
    except OSError:
        import platform
        return platform.machine() + platform.processor()
