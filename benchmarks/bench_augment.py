"""The cost of style augmentation in the train step: ms/step with and without, side by side.

    python benchmarks/bench_augment.py [--reps 30] [--rounds 5]

scriptlab's own train step (``train.make_step``) as the zoo trains it (TrainConfig's
batch_size 64 in micro-batches of 16), once as it is and once with
``TrainConfig.augment = STYLE_AUGMENT``; then the augmentation alone on the same 64
crops, all of it and each op by itself. The steps are timed in alternating rounds
(a loaded machine slows both alike) and each row reports the median round.
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from scriptlab import augment as augment_lib
from scriptlab import train
from scriptlab.model import ScriptNet


def make_train_step(cfg: train.TrainConfig):
    """A ``() -> None`` running one step of ``cfg`` (state carried between calls) to completion."""
    model = ScriptNet(10, 5, rngs=nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-3, weight_decay=1e-4))
    step = train.make_step(graphdef, rest, cfg, tx, 50)
    rng = np.random.default_rng(0)
    b = cfg.batch_size
    x = jnp.asarray(rng.integers(0, 256, (b, 32, 64, 3), dtype=np.uint8))
    y, f = (jnp.asarray(rng.integers(0, k, b)) for k in (10, 5))
    g = jnp.zeros(b, jnp.int32)
    box = [train.TrainState(params, tx.init(params), None), 0]

    def run():
        box[1] += 1
        box[0], loss = step(box[0], x, y, f, g, jnp.float32(0), jax.random.key(box[1]))
        jax.block_until_ready(loss)

    return run


def make_augment(cfg: augment_lib.Augment, batch: int):
    x = jax.random.uniform(jax.random.key(0), (batch, 32, 64, 3))
    fn = jax.jit(augment_lib.augment, static_argnums=2)
    box = [0]

    def run():
        box[0] += 1
        jax.block_until_ready(fn(jax.random.key(box[0]), x, cfg))

    return run


def time_rounds(runs: dict, reps: int, rounds: int) -> dict:
    """Median over ``rounds`` of ms per call, the runs interleaved round by round."""
    for run in runs.values():  # compile and warm
        run()
        run()
    ms = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            t = time.perf_counter()
            for _ in range(reps):
                run()
            ms[name].append(1e3 * (time.perf_counter() - t) / reps)
    return {name: float(np.median(v)) for name, v in ms.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    cfg = train.make_train_config()  # batch 64, micro-batches of 16: the zoo's step
    aug = augment_lib.STYLE_AUGMENT
    steps = time_rounds(
        {
            "train step, no augmentation": make_train_step(cfg),
            "train step, STYLE_AUGMENT": make_train_step(train.TrainConfig(augment=aug)),
        },
        args.reps,
        args.rounds,
    )
    alone = {"augment alone, STYLE_AUGMENT": make_augment(aug, cfg.batch_size)}
    for field in ("stroke", "shear", "elastic", "affine", "colour"):
        one = augment_lib.Augment(**{field: getattr(aug, field)})
        alone[f"augment alone, {field}={getattr(aug, field)}"] = make_augment(one, cfg.batch_size)
    alone = time_rounds(alone, args.reps, args.rounds)
    base = steps["train step, no augmentation"]
    print(f"backend {jax.default_backend()}, batch {cfg.batch_size}, micro_batch {cfg.micro_batch}")
    print(f"{'':40s} {'ms/step':>8s} {'x plain step':>12s}")
    for name, ms in {**steps, **alone}.items():
        print(f"{name:40s} {ms:8.2f} {ms / base:12.3f}")


if __name__ == "__main__":
    main()
