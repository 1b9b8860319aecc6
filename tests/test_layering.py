"""Layering: configs/ are leaves (they import nothing from experiments/), and checkpointing does
not import training: sampling restores the parameters alone, without building an optimizer."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np

from configs import gpt
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run_python(code: str) -> list:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_importing_any_config_loads_no_experiments_module():
    config_files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "configs").rglob("*.py"))
    assert "configs/gpt.py" in config_files and "configs/sweeps/smoke.py" in config_files
    loaded = run_python(
        "import importlib.util, json, sys\n"
        f"for i, path in enumerate({config_files!r}):\n"
        "    spec = importlib.util.spec_from_file_location(f'cfg{i}', path)\n"
        "    module = importlib.util.module_from_spec(spec)\n"
        "    spec.loader.exec_module(module)\n"
        "    module.get_config() if hasattr(module, 'get_config') else None\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'experiments')))\n")
    assert loaded == []


@pytest.mark.slow
def test_importing_checkpoint_loads_no_training_module():
    loaded = run_python(
        "import json, sys\nimport research.checkpoint\n"
        "print(json.dumps(sorted(m for m in sys.modules if m in "
        "('research.train', 'research.optim', 'optax'))))\n")
    assert loaded == []


@pytest.mark.slow
def test_sampling_restores_the_parameters_only(tmp_path):
    """A saved train state (params + optimizer state) is read back as the parameters alone, in
    a process that never imports the trainer or the optimizer."""
    from common import files
    from research import checkpoint, sharding, train_state
    from research.config import RunConfig

    c = gpt.get_config("tiny")
    c.model.n_layers, c.model.d_model, c.model.n_heads, c.model.context_length = 1, 32, 2, 16
    c.train.batch_size, c.train.tokens = 8, 8 * 16 * 4
    c.mesh.data, c.mesh.fsdp = 2, 4  # trained on 8 devices, FSDP: restored onto one
    cfg = RunConfig.from_configdict(c)
    trainer = train_state.build_trainer(cfg, sharding.make_mesh(cfg.mesh), 4)
    state = trainer.init(jax.random.key(3))
    files.write_json(tmp_path / "config.json", cfg.to_dict())
    manager = checkpoint.make_manager(str(tmp_path), cfg.train)
    checkpoint.save(manager, 4, state, force=True)
    manager.wait_until_finished()
    manager.close()
    expected = {"/".join(str(getattr(k, "key", k)) for k in path): np.asarray(leaf)
                for path, leaf in jax.tree_util.tree_leaves_with_path(state["params"])}
    np.savez(tmp_path / "expected.npz", **expected)

    report = run_python(
        "import json, sys\nimport numpy as np, jax\nfrom research import checkpoint\n"
        f"cfg, params = checkpoint.load_for_inference({str(tmp_path)!r})\n"
        f"want = np.load({str(tmp_path / 'expected.npz')!r})\n"
        "got = {'/'.join(str(getattr(k, 'key', k)) for k in p): np.asarray(x)"
        " for p, x in jax.tree_util.tree_leaves_with_path(params)}\n"
        "same = sorted(got) == sorted(want.files) and all("
        "np.array_equal(got[k], want[k]) for k in want.files)\n"
        "devices = {d for x in jax.tree.leaves(params) for d in x.devices()}\n"
        "print(json.dumps([same, len(devices), cfg.model.d_model,"
        " sorted(m for m in sys.modules if m in ('research.train', 'research.optim', 'optax'))]))\n")
    assert report == [True, 1, 32, []]


def test_common_imports_only_the_standard_library():
    """common/ is shared by research/, experiments/ and analysis/: it may import the standard
    library and itself, nothing else (analysis/ must stay usable without JAX or research/)."""
    import ast

    found = {}
    for path in sorted((ROOT / "common").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top != "common" and top not in sys.stdlib_module_names:
                    found.setdefault(path.name, []).append(name)
    assert (ROOT / "common" / "files.py").is_file() and found == {}
