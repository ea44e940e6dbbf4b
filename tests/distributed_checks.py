"""Checks of scriptlab.distributed on 4 forced CPU devices, run by tests/test_distributed.py.

Run as ``python tests/distributed_checks.py [names...]`` with
``XLA_FLAGS=--xla_force_host_platform_device_count=4`` (set before JAX starts).
One process runs every check (compiling is most of the cost); each prints one
line, ``ok NAME`` or ``FAIL NAME: message``, and the test maps lines to tests.

With ``--process-id I --processes P --port N --out DIR`` (and 2 forced devices)
it is one process of a ``jax.distributed`` run on localhost instead
(``two_process`` below).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))

CHECKS = {}


def check(fn):
    CHECKS[fn.__name__] = fn
    return fn


def close(a, b, *, rtol=1e-5, atol=1e-6, what=""):
    for (path, x), y in zip(
        jax.tree_util.tree_flatten_with_path(a)[0], jax.tree.leaves(b), strict=True
    ):
        np.testing.assert_allclose(
            np.asarray(x), np.asarray(y), rtol=rtol, atol=atol, err_msg=f"{what}{path}"
        )


def split_over(x, d: int) -> None:
    """x really is split along data over d devices: one block of rows per device."""
    s = x.sharding
    assert len(s.device_set) == d, f"{x.shape} lives on {len(s.device_set)} devices, not {d}"
    assert len(s.spec) and s.spec[0] == "data", f"spec {s.spec}"
    shards = {tuple(sh.data.shape) for sh in x.addressable_shards}
    assert shards == {(x.shape[0] // d, *x.shape[1:])}, f"shards {shards} of {x.shape}"


def replicated_over(x, d: int) -> None:
    assert x.sharding.is_fully_replicated and len(x.sharding.device_set) == d, x.sharding


# --------------------------------------------------------------------------- mesh and placement
@check
def mesh_and_errors():
    from scriptlab import distributed

    assert jax.device_count() == 4
    mesh = distributed.make_mesh("all")
    assert mesh.axis_names == ("data",) and mesh.shape["data"] == 4
    assert distributed.make_mesh(2).shape["data"] == 2
    assert distributed.check_devices("3") == 3
    for bad in (0, "0", "five", 5, 2.0, True, None):
        try:
            distributed.make_mesh(bad)
        except ValueError as err:
            shown = "devices=5 asks for more devices than there are: 4" if bad == 5 else repr(bad)
            assert str(err).startswith("devices") and shown in str(err), err
        else:
            raise AssertionError(f"devices={bad!r} was accepted")
    assert distributed.active_mesh() is None
    with distributed.data_parallel(1):
        assert distributed.active_mesh() is None  # one device: the single-device path
    with distributed.data_parallel("all") as m:
        assert distributed.active_mesh() == m
    try:
        distributed.check_divides("batch_size", 64, distributed.make_mesh(3))
    except ValueError as err:
        assert "batch_size=64" in str(err) and "3 devices" in str(err), err
    else:
        raise AssertionError("64 rows over 3 devices was accepted")


@check
def batch_placement():
    from scriptlab import distributed

    mesh = distributed.make_mesh("all")
    rows = distributed.local_rows(8, mesh)
    assert rows == slice(0, 8), rows  # one process feeds every row
    x = np.arange(8 * 3, dtype=np.float32).reshape(8, 3)
    batch = distributed.shard_batch(x, mesh, 8)
    split_over(batch, 4)
    assert np.array_equal(np.asarray(batch), x)
    state = distributed.replicate({"w": np.ones((2, 2), np.float32)}, mesh)
    replicated_over(state["w"], 4)
    assert np.array_equal(distributed.to_host(batch), x)


# --------------------------------------------------------------------------- training
def _small_config(**kw):
    from scriptlab import train

    # small layers and 2 steps: compiling is the cost, and these check placement, not learning
    return train.make_train_config(
        preset="smoke", epochs=1, n_train=64, batch_size=32, channels=(4, 8, 8), **kw
    )


@check
def training_matches_one_device():
    from scriptlab import data, distributed, train
    from scriptlab.model import functional

    ds = data.load("smoke", 0, progress=False)
    for mode in ("unlearn",):  # dropout and the gradient flip
        cfg = _small_config(mode=mode)
        one = train.train(cfg, ds, progress=False)
        with distributed.data_parallel("all"):
            four = train.train(cfg, ds, progress=False)
        a, b = functional(one.model)[0], functional(four.model)[0]
        if os.environ.get("SCRIPTLAB_CHECKS_OUT"):  # the two-process test compares with it
            leaves = {f"param{i}": np.asarray(x) for i, x in enumerate(jax.tree.leaves(a))}
            np.savez(f"{os.environ['SCRIPTLAB_CHECKS_OUT']}/one_device_{mode}.npz", **leaves)
        close(b, a, rtol=2e-4, atol=2e-5, what=f"{mode} ")
        leaves = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
        assert any(not np.array_equal(x, y) for x, y in leaves)  # it did run differently
        for h1, h4 in zip(one.history, four.history, strict=True):
            np.testing.assert_allclose(h4["loss"], h1["loss"], rtol=1e-4)
        # the result is an ordinary single-device model, like a one-device run's
        leaf = jax.tree.leaves(b)[0]
        assert len(leaf.sharding.device_set) == 1, leaf.sharding


@check
def train_step_shardings():
    import optax
    from flax import nnx

    from scriptlab import data, distributed, train

    ds = data.load("smoke", 0, progress=False)
    cfg = _small_config(mode="baseline")
    mesh = distributed.make_mesh("all")
    model = train.build_model(cfg, ds)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.adam(1e-3)
    step = train.make_step(graphdef, rest, cfg, tx, 50, mesh)
    state = distributed.replicate(train.TrainState(params, tx.init(params)), mesh)
    split = ds.train
    cols = (split.images[:32], split.script[:32], split.style[:32], split.script[:32])
    batch = distributed.shard_batch(cols, mesh, 32)
    for x in batch:
        split_over(x, 4)
    new, loss = step(state, *batch, jnp.float32(-1.0), jax.random.key(0))
    for leaf in jax.tree.leaves(new.params) + [loss]:
        replicated_over(leaf, 4)
    # the compiled step averages gradients across devices: an all-reduce, no pmap
    hlo = step.lower(state, *batch, jnp.float32(-1.0), jax.random.key(0)).compile().as_text()
    assert "all-reduce" in hlo


@check
def training_batch_must_divide():
    from scriptlab import distributed, train

    with distributed.data_parallel(3):
        try:
            train.train(_small_config(mode="baseline"), progress=False)
        except ValueError as err:
            assert "batch_size=32" in str(err) and "3 devices" in str(err), err
        else:
            raise AssertionError("batch 32 on 3 devices was accepted")


# --------------------------------------------------------------------------- transforms
def _model():
    from helpers import SMALL_SHAPE, scriptnet

    _, params, apply_fn = scriptnet(SMALL_SHAPE)
    images = jax.random.uniform(jax.random.key(1), (8, *SMALL_SHAPE))
    return params, apply_fn, images, jnp.arange(8) % 4


def _transforms():
    """name -> (fn(images, targets), rows): ``rows`` images (6 does not divide over 4
    devices: padded and cut), and whether the first output is per image (so split)."""
    from scriptlab import interpret, train
    from scriptlab.interpret import influence, occlusion

    params, apply_fn, _, _ = _model()
    loss = influence.cross_entropy(apply_fn, "script")
    return {
        # guided backprop, deconvnet and gradient x input share the gradient's code
        "gradient": (lambda x, t: interpret.vanilla_gradient(apply_fn, params, x, t), 8, True),
        "smoothgrad": (
            lambda x, t: interpret.smoothgrad(apply_fn, params, x, t, n_samples=4),
            6,
            True,
        ),
        "integrated_gradients": (
            lambda x, t: interpret.integrated_gradients(apply_fn, params, x, t, steps=4),
            8,
            True,
        ),
        "grad_cam": (lambda x, t: interpret.grad_cam(apply_fn, params, x, t), 6, True),
        "occlusion": (
            lambda x, t: occlusion.occlusion(apply_fn, params, x, t, patch=4, stride=4).scores,
            6,
            True,
        ),
        "activation_maps": (lambda x, t: interpret.activation_maps(apply_fn, params, x), 8, True),
        "activation_sparsity": (
            lambda x, t: interpret.activation_sparsity(apply_fn, params, x),
            6,
            False,
        ),
        "top_activating": (
            lambda x, t: interpret.top_activating(apply_fn, params, x, layer="conv2", k=2),
            8,
            False,
        ),
        "embed": (lambda x, t: interpret.embed(apply_fn, params, x, batch_size=2), 6, True),
        "predict": (lambda x, t: train.predict(apply_fn, params, x, batch_size=2), 8, True),
        "per_example_grads": (
            lambda x, t: influence.per_example_grads(loss, params, x, t, batch_size=2),
            6,
            True,
        ),
    }


@check
def transforms_match_one_device():
    from scriptlab import distributed

    _, _, images, targets = _model()
    for name, (fn, n, per_image) in _transforms().items():
        x, t = images[:n], targets[:n]
        one = fn(x, t)
        with distributed.data_parallel("all"):
            four = fn(x, t)
        close(four, one, rtol=2e-5, atol=2e-6, what=f"{name} n={n} ")
        if n == 8 and per_image:
            split_over(jax.tree.leaves(four)[0], 4)


@check
def influence_scores_match_one_device():
    from scriptlab import distributed
    from scriptlab.interpret import influence

    rng = np.random.default_rng(0)
    x, xt = rng.normal(size=(10, 3)).astype(np.float32), rng.normal(size=(3, 3)).astype(np.float32)
    y, yt = (x[:, 0] > 0).astype(np.int32), (xt[:, 0] > 0).astype(np.int32)
    params = {"w": jnp.asarray(rng.normal(size=(3, 2)), jnp.float32), "b": jnp.zeros(2)}
    kw = dict(l2=0.1, method="exact", batch_size=2)
    one = influence.influence_scores(influence.logistic_loss, params, x, y, xt, yt, **kw)
    with distributed.data_parallel("all"):
        four = influence.influence_scores(influence.logistic_loss, params, x, y, xt, yt, **kw)
    close(four.scores, one.scores, rtol=1e-4, atol=1e-6, what="influence ")


@check
def class_models_match_one_device():
    from scriptlab import distributed, interpret

    params, apply_fn, images, _ = _model()
    kw = dict(image_shape=images.shape[1:], steps=3, jitter=1)
    targets = [0, 1, 2, 3]  # padding is split_rows' and checked with smoothgrad
    one = interpret.class_model(apply_fn, params, targets=targets, **kw)
    with distributed.data_parallel("all"):
        four = interpret.class_model(apply_fn, params, targets=targets, **kw)
    close(four, one, rtol=1e-5, atol=1e-6, what="class_model ")
    split_over(four.images, 4)


@check
def no_retrace_per_call():
    from scriptlab import distributed, interpret
    from scriptlab.interpret import saliency

    params, apply_fn, images, targets = _model()
    other = images * 0.5  # made outside the block, as the first: the same placement
    with distributed.data_parallel("all"):
        interpret.vanilla_gradient(apply_fn, params, images, targets)
        size = saliency._gradient_map._cache_size()
        interpret.vanilla_gradient(apply_fn, params, other, targets)
        assert saliency._gradient_map._cache_size() == size


# --------------------------------------------------------------------------- two processes
def two_process(pid: int, processes: int, port: int, out: str) -> None:
    """One process of a jax.distributed run on localhost, 2 devices each: placement, a tiny
    training run (the one ``training_matches_one_device`` runs on one device), a transform,
    a checkpoint written once and restored by every process. Writes ``out/process{pid}.npz``
    for the test to compare."""
    os.environ.update(
        JAX_COORDINATOR_ADDRESS=f"localhost:{port}",
        JAX_NUM_PROCESSES=str(processes),
        JAX_PROCESS_ID=str(pid),
    )
    from scriptlab import data, distributed, interpret, train
    from scriptlab.model import functional

    assert distributed.initialize()
    assert jax.process_count() == processes and jax.device_count() == 2 * processes
    mesh = distributed.make_mesh("all")
    rows = distributed.local_rows(8, mesh)
    assert rows == slice(4 * pid, 4 * pid + 4), rows
    batch = distributed.shard_batch(np.arange(8, dtype=np.float32)[rows], mesh, 8)
    assert batch.shape == (8,) and not batch.is_fully_addressable
    assert len(batch.addressable_shards) == 2  # this process holds its own 2 blocks only
    assert np.array_equal(distributed.to_host(batch), np.arange(8))
    ds = data.load("smoke", 0, progress=False)
    cfg = _small_config(mode="unlearn")
    with distributed.data_parallel("all"):
        result = train.train(cfg, ds, progress=False)
        params, apply_fn = functional(result.model)
        maps = interpret.vanilla_gradient(apply_fn, params, ds.test.images[:8] / 255.0, 0)
    ckpt = train.save(result, f"{out}/ckpt")  # process 0 writes, every process waits
    restored = functional(train.restore(ckpt, cfg).model)[0]
    leaves = zip(jax.tree.leaves(restored), jax.tree.leaves(params), strict=True)
    assert all(np.array_equal(a, b) for a, b in leaves)
    arrays = {f"param{i}": np.asarray(a) for i, a in enumerate(jax.tree.leaves(params))}
    np.savez(f"{out}/process{pid}.npz", maps=distributed.to_host(maps), **arrays)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("names", nargs="*")
    parser.add_argument("--process-id", type=int)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--port", type=int)
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.process_id is not None:
        two_process(args.process_id, args.processes, args.port, args.out)
        print(f"ok process {args.process_id}", flush=True)
        return 0
    failed = 0
    for name in args.names or CHECKS:
        start = time.perf_counter()
        try:
            CHECKS[name]()
            print(f"ok {name} ({time.perf_counter() - start:.1f} s)", flush=True)
        except Exception as err:
            failed += 1
            trace = traceback.format_exc().replace("\n", " | ")
            print(f"FAIL {name}: {type(err).__name__}: {err} || {trace}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
