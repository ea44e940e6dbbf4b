"""Throughput on 1, 2 and 4 devices: a train step, vanilla saliency and occlusion.

    python benchmarks/bench_scaling.py [--devices 1 2 4] [--reps 20]

Each device count runs in its own process: on a CPU the devices are forced host
devices (``XLA_FLAGS=--xla_force_host_platform_device_count=N``), on a GPU machine the
first N GPUs. One device runs the single-device code; more run it under
``distributed.data_parallel`` (batches split along ``data``, parameters replicated).
Forced host devices share the same cores, so on a CPU the ratios measure the overhead
of splitting, not a speed-up; on GPUs they are the scaling.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

BATCH = 64  # the recipe's training batch
SALIENCY_IMAGES = 128
OCCLUSION_IMAGES = 8


def _rate(fn, reps: int) -> float:
    """Calls per second of fn() (which blocks), after one warm-up call (the compile)."""
    fn()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    return reps / (time.perf_counter() - start)


def measure(devices: int, reps: int) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from flax import nnx

    from scriptlab import distributed, interpret, train
    from scriptlab.interpret.occlusion import occlusion
    from scriptlab.model import ScriptNet, functional

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (BATCH, 32, 64, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, BATCH).astype(np.int32)
    model = ScriptNet(10, 5, rngs=nnx.Rngs(0))
    params, apply_fn = functional(model)
    graphdef, p, rest = nnx.split(model, nnx.Param, ...)
    cfg = train.make_train_config()
    tx = optax.adamw(1e-3)
    mesh = distributed.make_mesh(devices)
    on = mesh if devices > 1 else None  # one device: the single-device code
    with distributed.data_parallel(mesh):
        step = train.make_step(graphdef, rest, cfg, tx, 50, on)
        state = train.TrainState(p, tx.init(p))
        if on is None:
            batch = tuple(jnp.asarray(a) for a in (images, labels, labels % 5, labels))
        else:
            state = distributed.replicate(state, on)
            cols = (images, labels, labels % 5, labels)
            batch = distributed.shard_batch(cols, on, BATCH)
        key, lam = jax.random.key(0), jnp.float32(-1.0)

        def train_step():
            nonlocal state
            state, loss = step(state, *batch, lam, key)
            loss.block_until_ready()

        x = jnp.asarray(rng.uniform(size=(SALIENCY_IMAGES, 32, 64, 3)), jnp.float32)
        t = jnp.asarray(rng.integers(0, 10, SALIENCY_IMAGES))
        occ_x, occ_t = x[:OCCLUSION_IMAGES], t[:OCCLUSION_IMAGES]
        windows = OCCLUSION_IMAGES * len(range(0, 32 - 8 + 1, 4)) * len(range(0, 64 - 8 + 1, 4))
        return {
            "devices": devices,
            "train_steps": _rate(train_step, reps),
            "saliency": SALIENCY_IMAGES
            * _rate(
                lambda: interpret.vanilla_gradient(apply_fn, params, x, t).block_until_ready(),
                reps,
            ),
            "occlusion": windows
            * _rate(
                lambda: occlusion(
                    apply_fn, params, occ_x, occ_t, patch=8, stride=4
                ).scores.block_until_ready(),
                max(1, reps // 4),
            ),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.reps)))
        return
    rows = []
    for n in args.devices:
        env = dict(os.environ)
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={n}"
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(n), "--reps", str(args.reps)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    import jax

    print(f"{jax.devices()[0].platform}, jax {jax.__version__}, {os.cpu_count()} cores")
    base = rows[0]
    head = (
        f"| devices | train steps/s (batch {BATCH}) | vs 1 | saliency maps/s | vs 1 "
        "| occlusion windows/s | vs 1 |"
    )
    print(head)
    print("|" + "---|" * 7)
    for r in rows:
        cells = [str(r["devices"])]
        for k in ("train_steps", "saliency", "occlusion"):
            cells += [f"{r[k]:,.1f}", f"{r[k] / base[k]:.2f}x"]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
