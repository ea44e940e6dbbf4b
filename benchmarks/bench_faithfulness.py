"""Faithfulness curves: one batched jitted call per curve against a plain loop over images and steps.

    python benchmarks/bench_faithfulness.py [--repeats 2] [--crops 64] [--steps 20]

64 crops of the smoke test split (32 x 64 x 3), a random-init ScriptNet, their
gradient x input maps, 20 points per curve (1,280 perturbed crops per curve).
``scriptlab.interpret.faithfulness`` scores every (crop, step) pair of a curve
in one jitted lax.map over vmapped chunks of ``--batch-size``. The plain loop
is what one writes first with a compiled model: Python loops over crops and
steps, the order from a numpy stable argsort, and per step one call of a jitted
"perturb + forward" function of one crop (for ROAD: "impute + forward", the
same conjugate-gradient imputation and noise keys). Each loop's curve is
checked against the batched one before it is timed. The two alternate, run
by run, ``--repeats`` times after a warm-up; the table gives the best wall
seconds and the best CPU seconds (all threads of the process), which depend
far less on other work on a shared machine; compare the ratios.

Measured (2-core CPU shared with other jobs, load average about 23; wall /
CPU seconds, batched against the plain loop): deletion 1.26 / 0.31 s, 3.5x /
3.7x faster; insertion 2.00 / 0.46 s, 2.4x / 2.5x (its blurred baseline is
computed eagerly in the call); ROAD MoRF 3.38 / 1.28 s, 1.5x / 1.9x; ROAD LeRF
3.08 / 1.24 s, 1.9x / 2.0x. ROAD's cost is mostly its 1,280 conjugate-gradient
solves, which run one at a time in both versions; the batched call gains on
the vmapped forward passes.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from scriptlab import data
from scriptlab.interpret import faithfulness as F
from scriptlab.interpret.faithfulness import _impute_one
from scriptlab.interpret.saliency import gradient_x_input, make_baseline
from scriptlab.model import build, functional


def interleaved(fns, repeats):
    """Best wall and CPU seconds of each function, the runs alternating so that both
    see the same load (the CPU seconds, all threads of this process, barely depend on it)."""
    for fn in fns:
        jax.block_until_ready(fn())  # compile / warm up
    wall, cpu = [[] for _ in fns], [[] for _ in fns]
    for _ in range(repeats):
        for j, fn in enumerate(fns):
            t, c = time.perf_counter(), time.process_time()
            jax.block_until_ready(fn())
            wall[j].append(time.perf_counter() - t)
            cpu[j].append(time.process_time() - c)
    return [min(w) for w in wall], [min(c) for c in cpu]


def plain_loop(kind, apply_fn, params, images, targets, maps, fills, steps, noise, seed):
    """Python loops over crops and steps, one jitted single-crop call per (crop, step)."""

    def prob(x, target):
        return jax.nn.softmax(apply_fn(params, x[None]).script[0])[target]

    @jax.jit
    def masked(image, fill, changed, target):
        swap = kind == "insertion"
        x = jnp.where(changed[..., None], image if swap else fill, fill if swap else image)
        return prob(x, target)

    @jax.jit
    def imputed(image, changed, target, i, k):
        key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), i), k)
        return prob(_impute_one(image, changed, key, noise, F.ROAD_TOL, F.ROAD_ITERATIONS), target)

    images, maps, fills = np.asarray(images), np.asarray(maps), np.asarray(fills)
    n, h, w, _ = images.shape
    counts = F.pixel_counts(h * w, steps)

    def run():
        out = np.zeros((n, steps), np.float32)
        for i in range(n):
            flat = maps[i].ravel()
            order = np.argsort(flat if kind == "road_lerf" else -flat, kind="stable")
            for k in range(steps):
                changed = np.zeros(h * w, bool)
                changed[order[: counts[k]]] = True
                changed = changed.reshape(h, w)
                if kind.startswith("road"):
                    out[i, k] = imputed(images[i], changed, targets[i], i, k)
                else:
                    out[i, k] = masked(images[i], fills[i], changed, targets[i])
        return out

    return run


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--crops", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=64, help="the curves' lax.map chunk")
    args = ap.parse_args()

    ds = data.load("smoke", seed=0, progress=False)
    params, apply_fn = functional(build(len(ds.scripts), len(ds.styles), seed=0))
    images = jnp.asarray(data.as_float(ds.test.images[: args.crops]))
    targets = np.asarray(ds.test.script[: args.crops]).astype(np.int32)
    maps = gradient_x_input(apply_fn, params, images, targets)
    noise, seed = 0.01, 0
    fills = {
        "deletion": make_baseline(images, "black"),
        "insertion": make_baseline(images, "blur", blur_sigma=4.0),
    }
    kw = dict(steps=args.steps, batch_size=args.batch_size)
    curves = {
        "deletion": lambda: F.deletion_curve(apply_fn, params, images, targets, maps, **kw),
        "insertion": lambda: F.insertion_curve(apply_fn, params, images, targets, maps, **kw),
        "road_morf": lambda: F.road_curve(
            apply_fn, params, images, targets, maps, order="morf", noise=noise, seed=seed, **kw
        ),
        "road_lerf": lambda: F.road_curve(
            apply_fn, params, images, targets, maps, order="lerf", noise=noise, seed=seed, **kw
        ),
    }
    n, h, w, c = images.shape
    print(
        f"device: {jax.devices()[0].platform}; random-init ScriptNet; {n} crops {h}x{w}x{c}, "
        f"{args.steps} steps ({n * args.steps} forwards per curve); ROAD: "
        f"CG to relative residual {F.ROAD_TOL:g} (at most {F.ROAD_ITERATIONS} steps); lax.map chunk {args.batch_size}; "
        f"best of {args.repeats}"
    )
    print(
        f"{'curve':10s} {'batched s':>10s} {'loop s':>8s} {'ratio':>6s} "
        f"{'batched cpu s':>14s} {'loop cpu s':>11s} {'ratio':>6s} {'max |diff|':>11s}"
    )
    for name, batched in curves.items():
        ref = np.asarray(batched().scores)
        loop = plain_loop(
            name, apply_fn, params, images, targets, maps, fills.get(name, images), args.steps,
            noise, seed,
        )  # fmt: skip
        diff = float(np.abs(loop() - ref).max())
        assert diff < 1e-4, f"{name}: the plain loop disagrees with the batched curve by {diff}"
        (wb, wl), (cb, cl) = interleaved(
            [lambda batched=batched: batched().scores, loop], args.repeats
        )
        print(
            f"{name:10s} {wb:10.2f} {wl:8.2f} {wl / wb:5.1f}x "
            f"{cb:14.2f} {cl:11.2f} {cl / cb:5.1f}x {diff:11.1e}"
        )


if __name__ == "__main__":
    main()
