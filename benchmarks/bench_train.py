"""Train-step throughput (images/s) and achieved FLOP/s against the measured matmul peak.

    python benchmarks/bench_train.py [--torch]

Compares, side by side in one run: ScriptNet's jitted train step at the default
channels (16, 32, 64) and at the seed-like (32, 64, 64); the first design
(3x3 conv + nnx.max_pool at full resolution) that the strided stem and the
reshape pool replaced; scriptlab's own train step (``train.make_step``) with
one 64-row pass and with four 16-row passes (``TrainConfig.micro_batch``, the
default: the same mean gradient, activations that stay in cache); two
single-threaded processes running that default step at once (what ``zoo.warm``
does for the experiment's dozen models); optionally (--torch,
needs `pip install torch==2.13.0`) a PyTorch reference of the same default
architecture (benchmarks/torch_scriptnet.py: strided stem, standardisation
and dropout included). FLOPs per image = 3x the forward count (forward + backward).
"""

import argparse
import os
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import scriptlab.model as scriptlab_model
from scriptlab.model import ScriptNet


def matmul_peak(n: int = 2048, reps: int = 10) -> float:
    a = jnp.ones((n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    t = time.perf_counter()
    for _ in range(reps):
        f(a).block_until_ready()
    return 2 * n**3 * reps / (time.perf_counter() - t)


def _first_design(model: ScriptNet) -> ScriptNet:
    """The v0 stem: 3x3 conv at full resolution, then nnx.max_pool (select-and-scatter gradient)."""
    model.conv1 = nnx.Conv(3, 16, (3, 3), padding="SAME", rngs=nnx.Rngs(0))
    pool = lambda x: nnx.max_pool(x, window_shape=(2, 2), strides=(2, 2))
    conv1 = model.conv1
    model.conv1 = lambda x: pool(conv1(x))  # relu(pool(conv(x))) == pool(relu(conv(x)))
    scriptlab_model._max_pool = pool
    return model


def jax_step_rate(channels, batch: int, reps: int, first_design: bool = False) -> tuple[float, int]:
    model = ScriptNet(10, 5, channels=channels, rngs=nnx.Rngs(0))
    flops = model.cost()["flops_per_image"]
    if first_design:
        model = _first_design(model)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.adamw(1e-3)

    def loss(p, x, y, key):
        out = nnx.merge(graphdef, p, rest, copy=True)(x, dropout_key=key)
        return optax.softmax_cross_entropy_with_integer_labels(out.script, y).mean()

    @jax.jit
    def step(p, s, x, y, key):
        g = jax.grad(loss)(p, x, y, key)
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s

    x = jax.random.uniform(jax.random.key(0), (batch, 32, 64, 3))
    y = jax.random.randint(jax.random.key(2), (batch,), 0, 10)  # random labels: see torch_step_rate
    s = tx.init(params)
    params, s = step(params, s, x, y, jax.random.key(1))
    jax.block_until_ready(params)
    t = time.perf_counter()
    for i in range(reps):
        params, s = step(params, s, x, y, jax.random.key(i))
    jax.block_until_ready(params)
    return batch * reps / (time.perf_counter() - t), flops


def real_step_rate(micro_batch: int, batch: int, reps: int) -> float:
    """images/s of scriptlab's own train step (``train.make_step``: clipping, AdamW, dropout,
    both heads) with ``micro_batch`` rows per forward/backward pass, fed uint8 crops."""
    from scriptlab import train

    cfg = train.make_train_config(batch_size=batch, micro_batch=micro_batch)
    model = ScriptNet(10, 5, rngs=nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-3, weight_decay=1e-4))
    step = train.make_step(graphdef, rest, cfg, tx, 50)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.integers(0, 256, (batch, 32, 64, 3), dtype=np.uint8))
    y, f = (jnp.asarray(rng.integers(0, k, batch)) for k in (10, 5))
    g = jnp.zeros(batch, jnp.int32)
    state = train.TrainState(params, tx.init(params), None)
    state, loss = step(state, x, y, f, g, jnp.float32(0), jax.random.key(0))
    jax.block_until_ready(loss)
    t = time.perf_counter()
    for i in range(reps):
        state, loss = step(state, x, y, f, g, jnp.float32(0), jax.random.key(i))
    jax.block_until_ready(loss)
    return batch * reps / (time.perf_counter() - t)


def torch_step_rate(batch: int, reps: int) -> float:
    import torch
    from torch import nn
    from torch_scriptnet import TorchScriptNet  # benchmarks/ is on sys.path when run as a script

    torch.manual_seed(0)
    net = TorchScriptNet().train()  # the same layers as ScriptNet, dropout on
    opt = torch.optim.AdamW(net.parameters(), 1e-3)
    # Random labels, as in jax_step_rate. With constant labels the loss reaches exactly 0 within a
    # few steps and the gradients turn denormal: XLA flushes those to zero, PyTorch computes them
    # at full cost (measured: 836 img/s with constant labels, 3,369 with random ones).
    x, y = torch.rand(batch, 3, 32, 64), torch.randint(0, 10, (batch,))
    for i in range(reps + 1):
        if i == 1:
            t = time.perf_counter()
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return batch * reps / (time.perf_counter() - t)


def parallel_rate(batch: int, reps: int, procs: int = 2) -> float:
    """Summed images/s of ``procs`` single-threaded processes stepping at the same time."""
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
    }
    cmd = [sys.executable, __file__, "--single", "--batch", str(batch), "--reps", str(reps)]
    runs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True) for _ in range(procs)]
    return sum(float(r.communicate()[0].split()[-1]) for r in runs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--torch", action="store_true")
    ap.add_argument("--single", action="store_true", help="(internal) print one rate and exit")
    args = ap.parse_args()
    if args.single:
        print(real_step_rate(16, args.batch, args.reps))
        return
    peak = matmul_peak()
    print(f"device: {jax.devices()[0].device_kind}; matmul peak {peak / 1e9:.0f} GFLOP/s")
    print(f"{'implementation':<34} {'images/s':>9} {'GFLOP/s':>8} {'% peak':>7}")
    rows = []
    for ch in ((16, 32, 64), (32, 64, 64)):
        rate, flops = jax_step_rate(ch, args.batch, args.reps)
        rows.append((f"JAX ScriptNet channels={ch}", rate, 3 * flops * rate))
    for micro in (args.batch, 16):
        rate = real_step_rate(micro, args.batch, args.reps)
        label = f"train.make_step, {args.batch // micro} x {micro} rows"
        rows.append((label, rate, rows[0][2] / rows[0][1] * rate))
    par = parallel_rate(args.batch, args.reps)
    rows.append(("2 processes x 1 thread (zoo.warm)", par, rows[0][2] / rows[0][1] * par))
    if args.torch:
        flops16 = ScriptNet(10, 5, rngs=nnx.Rngs(0)).cost()["flops_per_image"]
        rate = torch_step_rate(args.batch, args.reps)
        rows.append(("PyTorch same arch (16, 32, 64)", rate, 3 * flops16 * rate))
    for name, rate, fl in rows:
        print(f"{name:<34} {rate:>9.0f} {fl / 1e9:>8.1f} {100 * fl / peak:>6.1f}%")
    reshape_pool = scriptlab_model._max_pool
    first, _ = jax_step_rate((16, 32, 64), args.batch, args.reps, first_design=True)
    scriptlab_model._max_pool = reshape_pool  # _first_design patched the module's pool
    print(f"{'first design (3x3 conv + nnx pool)':<34} {first:>9.0f}")
    if args.torch:
        print(f"JAX / PyTorch (same architecture): {rows[0][1] / rows[-1][1]:.2f}x")
        print(f"train.make_step (4 x 16 rows) / PyTorch: {rows[3][1] / rows[-1][1]:.2f}x")
    print(f"train.make_step 4 x 16 rows / 1 x 64 rows: {rows[3][1] / rows[2][1]:.2f}x")
    print(f"(16,32,64) / (32,64,64) speed: {rows[0][1] / rows[1][1]:.2f}x")
    print(
        f"2 processes x 1 thread / 1 process (both train.make_step, 4 x 16 rows): {par / rows[3][1]:.2f}x"
    )
    print(f"strided stem + reshape pool / first design: {rows[0][1] / first:.2f}x")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
