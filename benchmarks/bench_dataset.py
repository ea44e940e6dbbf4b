"""Dataset generation speed: crops per second at the workshop image size.

    python benchmarks/bench_dataset.py [--n 4000]

Renders the same crops with 1 worker and with all cores (no cache) and prints a
table; the arrays must be identical (determinism does not depend on workers).
"""

import argparse
import os
import time

import numpy as np

from scriptlab import data


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=4000)
    args = ap.parse_args()
    sizes = dict(n_train=args.n, n_val=0, n_test=0, n_conflict=0, n_heldout=0)
    rows, images = [], []
    for workers in (1, os.cpu_count() or 1):
        data.load(
            "workshop",
            seed=123,
            workers=workers,
            cache=False,
            progress=False,
            n_train=256,
            n_val=0,
            n_test=0,
            n_conflict=0,
            n_heldout=0,
        )  # warm font caches
        t = time.perf_counter()
        ds = data.load("workshop", seed=7, workers=workers, cache=False, progress=False, **sizes)
        dt = time.perf_counter() - t
        images.append(ds.train.images)
        rows.append((workers, args.n, dt, args.n / dt))
    print(f"{'workers':>8} {'crops':>7} {'seconds':>8} {'crops/s':>9}")
    for w, n, dt, rate in rows:
        print(f"{w:>8} {n:>7} {dt:>8.2f} {rate:>9.0f}")
    print(
        f"speed-up with {rows[-1][0]} workers: {rows[-1][3] / rows[0][3]:.2f}x; "
        f"identical arrays: {np.array_equal(images[0], images[-1])}"
    )


if __name__ == "__main__":
    main()
