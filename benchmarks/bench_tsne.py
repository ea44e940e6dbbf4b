"""scriptlab's exact-gradient t-SNE against scikit-learn's TSNE, side by side.

    python benchmarks/bench_tsne.py              # N = 2,000 and 5,000
    python benchmarks/bench_tsne.py --sizes 1000 # quicker

Inputs: 128-d points in 10 Gaussian clusters of different widths (seeded).
Both runs use the same settings: perplexity 30, 1,000 iterations of which 250
with early exaggeration 12, momentum 0.5 then 0.8, PCA initialisation scaled to
std 1e-4, and the same step size (scriptlab's "auto" learning rate max(N/12, 200)
in the openTSNE convention; scikit-learn is given a quarter of it, its
convention's equal). scikit-learn runs with its default gradient, Barnes-Hut
(angle 0.5), so its per-iteration cost is O(N log N) against our exact O(N^2).

Columns: KL is each method's final KL divergence as it reports it (scikit-learn's
is the Barnes-Hut estimate); "exact KL" evaluates both final maps with the same
kNN input affinities and the exact O(N^2) sum; trustworthiness with 5
neighbours; wall time of the whole fit (neighbours, calibration, optimisation).
scriptlab's time is a warm call, its compile time is listed apart. ratio =
scikit-learn time / scriptlab time (> 1: scriptlab faster). CPU s: process CPU
time (both cores), less sensitive to other load than wall time (scikit-learn's
OpenMP threads in particular slow down badly on an oversubscribed machine).
Timings on a shared machine are noisy: compare within one run.

Measured on 2 CPU cores: 1,000 iterations took about 3-6 s at N = 2,000 and
20-50 s at N = 5,000, depending on how busy the machine was; N = 10,000 fits
easily in memory (the whole process peaks near 420 MB) but takes minutes, about
4x the N = 5,000 time.
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import numpy as np

from scriptlab.interpret import embedding as E


def clustered(n: int, d: int = 128, clusters: int = 10, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, d)) * 2.0
    widths = rng.uniform(0.5, 1.5, clusters)
    label = rng.integers(0, clusters, n)
    return (centres[label] + widths[label, None] * rng.normal(size=(n, d))).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 5000])
    parser.add_argument("--n-iter", type=int, default=1000)
    args = parser.parse_args()
    from sklearn.manifold import TSNE

    print(f"cores: {os.cpu_count()}, jax {jax.__version__}, devices {jax.devices()}")
    rows = []
    for n in args.sizes:
        x = clustered(n)
        lr = max(n / 12.0, 200.0)

        def ours(x=x, lr=lr):
            res = E.tsne(x, perplexity=30.0, n_iter=args.n_iter, learning_rate=lr)
            return jax.block_until_ready(res)

        t0 = time.perf_counter()
        ours()
        cold = time.perf_counter() - t0
        t0, c0 = time.perf_counter(), time.process_time()
        res = ours()
        t_ours, c_ours = time.perf_counter() - t0, time.process_time() - c0

        sk = TSNE(
            n_components=2,
            perplexity=30.0,
            early_exaggeration=12.0,
            learning_rate=lr / 4.0,
            max_iter=args.n_iter,
            init="pca",
            random_state=0,
        )
        t0, c0 = time.perf_counter(), time.process_time()
        y_sk = sk.fit_transform(x).astype(np.float32)
        t_sk, c_sk = time.perf_counter() - t0, time.process_time() - c0

        aff = res.affinities
        exact_sk = float(E.kl_divergence_and_gradient(aff, y_sk)[0])
        rows.append(
            dict(
                n=n,
                kl_ours=float(res.kl),
                kl_sk=float(sk.kl_divergence_),
                exact_sk=exact_sk,
                tw_ours=float(E.trustworthiness(x, res.embedding)),
                tw_sk=float(E.trustworthiness(x, y_sk)),
                t_ours=t_ours,
                compile=cold - t_ours,
                t_sk=t_sk,
                c_ours=c_ours,
                c_sk=c_sk,
                sk_iter=int(sk.n_iter_),
            )
        )
        r = rows[-1]
        print(
            f"N={n}: ours {t_ours:.1f} s (+{r['compile']:.1f} s compile), sklearn {t_sk:.1f} s "
            f"({r['sk_iter']} iterations)",
            flush=True,
        )

    print()
    print(
        "| N | KL scriptlab (exact) | KL sklearn (BH estimate) | exact KL of sklearn's map "
        "| KL ours / sklearn exact | trust. scriptlab | trust. sklearn | time scriptlab (s) "
        "| time sklearn BH (s) | ratio sklearn/scriptlab | CPU s scriptlab | CPU s sklearn |"
    )
    print("|---" * 12 + "|")
    for r in rows:
        print(
            f"| {r['n']} | {r['kl_ours']:.4f} | {r['kl_sk']:.4f} | {r['exact_sk']:.4f} "
            f"| {r['kl_ours'] / r['exact_sk']:.3f} | {r['tw_ours']:.4f} | {r['tw_sk']:.4f} "
            f"| {r['t_ours']:.1f} | {r['t_sk']:.1f} | {r['t_sk'] / r['t_ours']:.2f} "
            f"| {r['c_ours']:.1f} | {r['c_sk']:.1f} |"
        )


if __name__ == "__main__":
    main()
