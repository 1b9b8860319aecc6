"""Device mesh and logical-axis sharding ("pjit" style).

Mesh axes are ("data", "fsdp", "tensor"); their sizes come from the config, -1 meaning all the
devices the other axes leave. Model code names axes logically; `config.mesh.rules` maps them.
"""

from __future__ import annotations

import contextlib

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from research.errors import ConfigError

MESH_AXES = ("data", "fsdp", "tensor")


def mesh_shape(mesh_cfg, n_devices: int) -> tuple[int, int, int]:
    """Resolve -1 entries; refuse shapes that do not multiply to the device count."""
    sizes = [int(getattr(mesh_cfg, a)) for a in MESH_AXES]
    fill = [i for i, s in enumerate(sizes) if s == -1]
    if len(fill) > 1:
        raise ConfigError("at most one mesh axis may be -1; set the others explicitly")
    if any(s == 0 or s < -1 for s in sizes):
        raise ConfigError(f"mesh sizes must be positive or -1, got {dict(zip(MESH_AXES, sizes))}")
    known = int(np.prod([s for s in sizes if s != -1]))
    if fill:
        if n_devices % known:
            raise ConfigError(
                f"mesh {dict(zip(MESH_AXES, sizes))} cannot fill {n_devices} devices: "
                f"{known} does not divide {n_devices}; change --config.mesh.* sizes")
        sizes[fill[0]] = n_devices // known
    if int(np.prod(sizes)) != n_devices:
        raise ConfigError(
            f"mesh data*fsdp*tensor = {int(np.prod(sizes))} but there are {n_devices} devices; "
            f"set --config.mesh.data/fsdp/tensor to multiply to {n_devices} (or use -1)")
    return tuple(sizes)


def make_mesh(mesh_cfg, devices=None) -> Mesh:
    devices = list(devices if devices is not None else jax.devices())
    shape = mesh_shape(mesh_cfg, len(devices))
    # Auto axes: classic auto-sharded layers break under the Explicit default of make_mesh.
    return Mesh(np.asarray(devices).reshape(shape), MESH_AXES,
                axis_types=(AxisType.Auto,) * len(MESH_AXES))


def rules_of(mesh_cfg):
    return tuple((name, tuple(ax) if isinstance(ax, list) else ax) for name, ax in mesh_cfg.rules)


@contextlib.contextmanager
def activate(mesh: Mesh, rules):
    """The mesh and logical rules under which model code is traced."""
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        yield


def logical_shardings(boxed_tree, mesh: Mesh, rules):
    """NamedShardings for a tree of (abstract) LogicallyPartitioned leaves."""
    specs = nn.get_partition_spec(boxed_tree)
    return nn.logical_to_mesh_sharding(specs, mesh, rules)


def batch_sharding(mesh: Mesh, rules) -> NamedSharding:
    """Sharding of [batch, length] token arrays: batch over the data-parallel axes."""
    spec = nn.logical_to_mesh_axes(("batch", None), rules)
    return NamedSharding(mesh, spec)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def data_parallel_size(mesh: Mesh, rules) -> int:
    """How many ways the batch dimension is split."""
    spec = nn.logical_to_mesh_axes(("batch",), rules)[0]
    axes = (spec,) if isinstance(spec, str) else (spec or ())
    return int(np.prod([mesh.shape[a] for a in axes]))
