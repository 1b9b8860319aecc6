"""Coordinate check (Yang et al. 2022, "Tensor Programs V", section 7): train the same model at
several widths for a few steps and record the RMS of every layer's output. Under µP the curves
are flat in width; under SP some grow with width (Adam's updates add up over the width).

Each (parametrization, width) trains with the real trainer (µP init and LR multipliers
included), constant LR from the first step, several seeds; the RMS of each module's output is
measured on one fixed validation batch after given numbers of steps and averaged over seeds.
µP's base is the smallest width (its head width at the config's n_heads), so there µP == SP.
Layers are a Python loop here (`model.scan_layers=False`: the same function as the scan,
tests/test_model.py) so that each layer's outputs can be captured.
"""

from __future__ import annotations

import copy

import jax
import jax.numpy as jnp
import numpy as np

from research import data as data_lib, sharding, train_state
from research.config import RunConfig


def _name(path) -> str:
    names = [str(p) for p in path if p != "__call__"]
    return "/".join(names) or "output_logits"


def _activation_rms(tree) -> dict:
    """{module path: RMS of its output} for Flax's captured intermediates."""
    out = {}

    def visit(node, path):
        if isinstance(node, tuple):  # captured outputs: (value,) ; modules return (x, cache)
            first = node[0]
            while isinstance(first, tuple):
                first = first[0]
            out[_name(path)] = jnp.sqrt(jnp.mean(jnp.square(first.astype(jnp.float32))))
            return
        for key, child in node.items():
            visit(child, (*path, key))

    visit(tree, ())
    return out


def width_config(config, width: int, parametrization: str, base_width: int, steps: int):
    c = copy.deepcopy(config)
    m, t = c.model, c.train
    m.d_model, m.parametrization = int(width), parametrization
    m.mup_base_width, m.mup_base_head_dim = int(base_width), int(base_width) // int(m.n_heads)
    m.scan_layers = False
    t.schedule, t.warmup_steps = "constant", 1
    t.tokens = steps * int(t.batch_size) * int(m.context_length)
    t.microbatches = 1
    c.mesh.data, c.mesh.fsdp, c.mesh.tensor = 1, 1, 1
    RunConfig.from_configdict(c)  # refuses an impossible width (heads not dividing it, ...)
    return c


def measure(config, widths, *, steps: int, seeds: int, record_steps=None,
            parametrizations=("sp", "mup")) -> dict:
    """RMS per parametrization, recorded step, layer and width (mean over seeds)."""
    widths = sorted(int(w) for w in widths)
    record = sorted({int(s) for s in (record_steps or ()) if 0 <= int(s) <= steps} | {steps})
    for w in widths:  # refuse impossible widths before any work
        width_config(config, w, "sp", widths[0], steps)
    data = data_lib.load_token_data(config.data)
    ctx, batch = int(config.model.context_length), int(config.train.batch_size)
    probe = data_lib.eval_batches(data, n_batches=1, batch_size=batch, context_length=ctx)[0]
    device = jax.devices()[:1]
    rms = {p: {t: {} for t in record} for p in parametrizations}
    for p in parametrizations:
        for w in widths:
            c = width_config(config, w, p, widths[0], steps)
            mesh = sharding.make_mesh(c.mesh, device)
            trainer = train_state.build_trainer(c, mesh, steps)
            model = trainer.model

            @jax.jit
            def probe_rms(params, tokens):
                _, state = model.apply({"params": params}, tokens[:, :-1],
                                       capture_intermediates=True, mutable=["intermediates"])
                return _activation_rms(state["intermediates"])

            per_seed = {t: [] for t in record}
            for seed in range(seeds):
                state = trainer.init(jax.random.key(seed))
                for step in range(steps + 1):
                    if step in per_seed:
                        per_seed[step].append(jax.device_get(probe_rms(state["params"], probe)))
                    if step == steps:
                        break
                    b = data_lib.train_batch(data, step=step, batch_size=batch, context_length=ctx,
                                             seed=seed)
                    state, _ = trainer.train_step(state, train_state.put_batch(trainer, b))
            for t, measured in per_seed.items():
                for layer in measured[0]:
                    value = float(np.mean([m[layer] for m in measured]))
                    rms[p][t].setdefault(layer, []).append(value)
    return {"widths": widths, "steps": record, "seeds": seeds, "base_width": widths[0],
            "learning_rate": float(config.train.learning_rate), "rms": rms,
            "slopes": slopes(widths, rms)}


def slopes(widths, rms) -> dict:
    """Least-squares slope of log RMS against log width, per parametrization, step and layer."""
    x = np.log(np.asarray(widths, float))
    return {p: {t: {layer: float(np.polyfit(x, np.log(v), 1)[0]) for layer, v in layers.items()}
                for t, layers in by_step.items()}
            for p, by_step in rms.items()}
