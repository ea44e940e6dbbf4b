"""Golden test: a smoke-size training run's bits, so a change to them cannot go unnoticed.

Zoo models are cached under ``TrainConfig.key()``, which hashes
``train.TRAINING_CODE_VERSION``. A change that moves the trained bits (the loss, the
optimiser, the step, the model's forward pass or initialisation) must bump that
version, or every notebook keeps loading weights the new code would not train. This
test trains a tiny model and compares its final loss and a checksum of its parameters
with tests/golden.json, recorded per platform (XLA's numerics differ between backends
and versions) and per dataset key (the smoke dataset's bytes).

Re-record after bumping the version (or for a new platform):
``SCRIPTLAB_RECORD_GOLDEN=1 pytest tests/test_golden.py``. Recording refuses to
overwrite different bits recorded under the same version.
"""

import hashlib
import json
import os
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx

from scriptlab import train

GOLDEN = Path(__file__).with_name("golden.json")
RECORD = "SCRIPTLAB_RECORD_GOLDEN=1 pytest tests/test_golden.py"
# unlearn covers the flip, the lam schedule, dropout and both heads; 8 steps of 16 crops
CONFIG = dict(mode="unlearn", preset="smoke", epochs=2, batch_size=16, n_train=64)


def platform_key() -> str:
    """The backend and the jax version (major.minor): what decides XLA's float rounding."""
    major_minor = ".".join(jax.__version__.split(".")[:2])
    return f"{jax.default_backend()}/jax-{major_minor}"


def params_sha256(model: nnx.Module) -> str:
    """sha256 over every parameter's path, shape and float32 bytes, in path order."""
    flat = jax.tree_util.tree_flatten_with_path(nnx.state(model, nnx.Param).to_pure_dict())[0]
    h = hashlib.sha256()
    for path, leaf in sorted(flat, key=lambda kv: jax.tree_util.keystr(kv[0])):
        a = np.ascontiguousarray(np.asarray(leaf, np.float32))
        h.update(f"{jax.tree_util.keystr(path)}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def golden_run(ds) -> dict:
    """Train the smoke-size model and return what the golden file records for it."""
    result = train.train(train.make_train_config(**CONFIG), ds, progress=False)
    return {
        "training_code_version": train.TRAINING_CODE_VERSION,
        "data_key": ds.key,
        "final_loss": result.history[-1]["loss"],
        "params_sha256": params_sha256(result.model),
    }


def compare(recorded: dict | None, now: dict) -> str | None:
    """Why ``now`` does not match the ``recorded`` entry (None when it does)."""
    if recorded is None:
        return f"no golden run is recorded for {platform_key()}: record it with {RECORD}"
    if recorded["data_key"] != now["data_key"]:
        return (
            f"the smoke dataset changed (key {now['data_key']}, recorded {recorded['data_key']}): "
            f"re-record with {RECORD}"
        )
    same_bits = all(recorded[k] == now[k] for k in ("final_loss", "params_sha256"))
    if recorded["training_code_version"] != now["training_code_version"]:
        return (
            f"train.TRAINING_CODE_VERSION is {now['training_code_version']}, the golden run was "
            f"recorded at {recorded['training_code_version']}: re-record with {RECORD}"
        )
    if not same_bits:
        return (
            f"trained bits changed: bump train.TRAINING_CODE_VERSION and re-record with {RECORD} "
            f"(final loss {now['final_loss']!r}, recorded {recorded['final_loss']!r}; parameter "
            f"sha256 {now['params_sha256'][:16]}, recorded {recorded['params_sha256'][:16]})"
        )
    return None


def test_compare_names_each_cause():
    """The comparison itself, on made-up entries: each way of differing gets its message."""
    base = {"training_code_version": 3, "data_key": "d", "final_loss": 1.5, "params_sha256": "ab"}
    assert compare(base, dict(base)) is None
    assert "no golden run" in compare(None, base)
    assert "bump train.TRAINING_CODE_VERSION" in compare(base, base | {"final_loss": 1.25})
    assert "bump train.TRAINING_CODE_VERSION" in compare(base, base | {"params_sha256": "cd"})
    bumped = compare(base, base | {"training_code_version": 4, "params_sha256": "cd"})
    assert "recorded at 3" in bumped and "bump" not in bumped
    assert "smoke dataset changed" in compare(base, base | {"data_key": "e"})


def test_trained_bits_match_the_golden_run(smoke):
    golden = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    now = golden_run(smoke)
    recorded = golden.get(platform_key())
    problem = compare(recorded, now)
    if os.environ.get("SCRIPTLAB_RECORD_GOLDEN") == "1" and problem is not None:
        if problem.startswith("trained bits changed"):
            pytest.fail(f"refusing to re-record: {problem}")
        golden[platform_key()] = now
        GOLDEN.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
        return
    assert problem is None, problem
