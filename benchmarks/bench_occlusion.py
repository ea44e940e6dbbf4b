"""Occlusion and top-k patch search: one batched jitted call against per-window loops.

    python benchmarks/bench_occlusion.py [--repeats 3] [--zoo] [--no-torch]

The PyTorch rows need the bench extra (pip install -e ".[bench]").

Occlusion map of one 32x64x3 crop with an 8x8 grey window at stride 2 (377
windows) and stride 1 (1,425 windows). ``scriptlab.interpret.occlusion`` scores
every window in one jitted lax.map over vmapped chunks. It is compared, side by
side in one run, with per-window loops of single forward passes of the same
network and weights:

- JAX, eager: ``apply_fn`` called per window without jit (the loop one writes first);
- JAX, jitted: one compiled "occlude + forward" function called per window;
- PyTorch 2.13, eager: the same network ported with the same weights
  (benchmarks/torch_scriptnet.py), one forward per window, which is what
  Captum's Occlusion does with its default perturbations_per_eval=1;
- PyTorch, 64 windows per forward (Captum's perturbations_per_eval=64).

Every loop's map is checked against the batched one before it is timed. The
last row per stride is the compute floor: windows x FLOPs per forward at the
measured matmul peak, the time no exact method can beat on this machine. Times
are the best of ``--repeats`` runs after a warm-up run; on a shared machine
compare the ratios, not the seconds. Then the top-k patch search (every conv3
channel's top 9 images with their receptive-field crops) over the workshop
test split.

For scale (ANCHORS.md, same 2-core machines, the seed's larger convnet): Captum
0.9 Occlusion, same crop, 8x8 window, stride 2: 840 ms with default settings,
390 ms with perturbations_per_eval=64.

Measured (2-core CPU, random-init ScriptNet, matmul peak 271 GFLOP/s), stride 2
/ stride 1: scriptlab 0.030 s / 0.102 s; the eager JAX loop is 44x / 48x
slower, the PyTorch per-window loop 5.0x / 5.3x, PyTorch at 64 windows per
forward 1.3x / 1.3x, the jitted JAX loop 2.9x / 2.8x. The compute floor is
0.015 s / 0.057 s, so against the jitted loop no exact method can gain more
than 5.8x / 5.1x here: the batched call already runs at half the matmul peak,
and the single-crop forward inside the loop at about a sixth of it. Occluding
a patch cannot be recomputed only inside its receptive-field footprint either:
the model standardises each crop by its own mean and std, which the patch
shifts, so every activation of every occluded copy changes.
"""

from __future__ import annotations

import argparse
import importlib.util
import time

import jax
import jax.numpy as jnp
import numpy as np
from bench_train import matmul_peak

from scriptlab.interpret.occlusion import occlusion
from scriptlab.interpret.receptive import receptive_crops, receptive_fields, top_activating
from scriptlab.model import ScriptNet, build, functional

PATCH = 8


def best_of(fn, repeats):
    jax.block_until_ready(fn())  # compile / warm up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t)
    return min(times)


def jax_loops(apply_fn, params, crop, target):
    """Per-window loops of single JAX forward passes: eager, and one jitted call per window."""

    def occlude_forward(x, r, c):
        x = jax.lax.dynamic_update_slice(x, jnp.full((PATCH, PATCH, x.shape[-1]), 0.5), (r, c, 0))
        return jax.nn.softmax(apply_fn(params, x[None]).script[0])[target]

    compiled = jax.jit(occlude_forward)

    def eager(windows):
        return np.array([float(occlude_forward(crop, r, c)) for r, c in windows])

    def jitted(windows):
        return np.array([compiled(crop, r, c) for r, c in windows])

    return eager, jitted


def torch_loops(params, crop, target):
    """Per-window PyTorch forwards of the same network, one at a time and 64 at a time."""
    import torch
    from torch_scriptnet import from_jax, to_nchw  # benchmarks/ is on sys.path when run as a script

    net, x = from_jax(params), to_nchw(crop[None])

    rows, cols = torch.arange(x.shape[2])[:, None], torch.arange(x.shape[3])[None, :]

    def occluded(windows):  # every window's copy at once, with a broadcast mask
        r, c = (torch.tensor(v)[:, None, None] for v in zip(*windows, strict=True))
        inside = (rows >= r) & (rows < r + PATCH) & (cols >= c) & (cols < c + PATCH)
        return torch.where(inside[:, None], 0.5, x)

    @torch.inference_mode()
    def one_at_a_time(windows):
        out = []
        for r, c in windows:
            xo = x.clone()
            xo[:, :, r : r + PATCH, c : c + PATCH] = 0.5
            out.append(torch.softmax(net(xo), -1)[0, target].item())
        return np.array(out)

    @torch.inference_mode()
    def per_64(windows):
        return np.concatenate(
            [
                torch.softmax(net(occluded(windows[i : i + 64])), -1)[:, target].numpy()
                for i in range(0, len(windows), 64)
            ]
        )

    return one_at_a_time, per_64


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--zoo",
        action="store_true",
        help="use zoo.load('baseline') instead of a random-init ScriptNet",
    )
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch rows")
    ap.add_argument("--batch-size", type=int, default=256, help="occlusion's lax.map chunk")
    args = ap.parse_args()

    from scriptlab import data

    ds = data.load("workshop", seed=0, progress=False)
    if args.zoo:
        from scriptlab import zoo

        m = zoo.load("baseline", progress=False)
        params, apply_fn = m.params, m.apply_fn
        flops = build(len(ds.scripts), len(ds.styles)).cost()["flops_per_image"]
    else:
        model = build(len(ds.scripts), len(ds.styles), seed=0)
        params, apply_fn = functional(model)
        flops = model.cost()["flops_per_image"]
    crop = jnp.asarray(data.as_float(ds.test.images[:1]))
    target = int(ds.test.script[0])
    peak = matmul_peak()
    eager, jitted = jax_loops(apply_fn, params, crop[0], target)
    loops = {
        "JAX loop, eager forward per window": eager,
        "JAX loop, jitted forward per window": jitted,
    }
    if not args.no_torch and importlib.util.find_spec("torch") is None:
        print('PyTorch rows skipped: torch is not installed (pip install -e ".[bench]")')
    elif not args.no_torch:
        one_at_a_time, per_64 = torch_loops(params, np.asarray(crop[0]), target)
        loops["PyTorch loop, forward per window"] = one_at_a_time
        loops["PyTorch, 64 windows per forward"] = per_64

    print(
        f"device: {jax.devices()[0].platform}; model: {'zoo baseline' if args.zoo else 'random-init ScriptNet'}, "
        f"{flops / 1e6:.1f} MFLOP/forward; matmul peak {peak / 1e9:.0f} GFLOP/s; lax.map chunk {args.batch_size}"
    )
    print(
        f"{'occlusion 8x8 grey, one crop':44s} {'windows':>7s} {'s':>8s} {'ms/window':>9s} {'scriptlab faster':>16s}"
    )
    for stride in (2, 1):
        windows = [
            (r, c)
            for r in range(0, 32 - PATCH + 1, stride)
            for c in range(0, 64 - PATCH + 1, stride)
        ]

        def batched(stride=stride):
            return occlusion(
                apply_fn,
                params,
                crop,
                target,
                patch=PATCH,
                stride=stride,
                batch_size=args.batch_size,
            ).scores[0]

        ref = np.asarray(batched()).ravel()
        t_ours = best_of(batched, args.repeats)
        rows = [(f"scriptlab.occlusion stride {stride}, one call", t_ours)]
        for name, loop in loops.items():
            got = loop(windows)
            assert np.allclose(got, ref, atol=2e-5), (
                f"{name} disagrees with the batched map: {np.abs(got - ref).max()}"
            )
            rows.append(
                (f"{name}", best_of(lambda loop=loop, windows=windows: loop(windows), args.repeats))
            )
        rows.append(("compute floor at the matmul peak", len(windows) * flops / peak))
        for name, t in rows:
            print(
                f"{name:44s} {len(windows):7d} {t:8.3f} {1e3 * t / len(windows):9.3f} {t / t_ours:15.1f}x"
            )
        jitted = dict(rows)["JAX loop, jitted forward per window"]
        print(
            f"  -> the most any exact method could gain over the jitted loop here: "
            f"{jitted / rows[-1][1]:.1f}x (scriptlab: {jitted / t_ours:.1f}x)"
        )

    for bs in (1, 256):
        xb = jnp.broadcast_to(crop, (bs, *crop.shape[1:]))
        fwd = jax.jit(lambda x: apply_fn(params, x).script)
        tf = best_of(lambda fwd=fwd, xb=xb: fwd(xb), args.repeats)
        print(
            f"{f'plain jitted forward, batch {bs}':44s} {'':>7s} {tf:8.4f} {1e3 * tf / bs:9.3f}  (ms/image)"
        )

    test = jnp.asarray(data.as_float(ds.test.images))
    rf = receptive_fields(ScriptNet.geometry(), test.shape[1:3])["conv3"]

    def search():
        top = top_activating(apply_fn, params, test, "conv3", k=9, batch_size=64)
        return receptive_crops(test, rf, top.index, top.row, top.col)

    ts = best_of(search, args.repeats)
    print(
        f"{'top-9 conv3 crops, test split':44s} {len(test):7d} {ts:8.3f} {1e3 * ts / len(test):9.3f}  (ms/image)"
    )


if __name__ == "__main__":
    main()
