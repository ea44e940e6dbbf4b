"""One prepared run that checks scriptlab on an accelerator: speed, memory and numbers vs the CPU.

    python benchmarks/device_check.py --size full --out DIR [--wheels DIR]   # on the GPU machine
    python benchmarks/device_check.py --size tiny --out DIR                  # CI: a CPU, < 2 min
    python benchmarks/device_check.py --download-wheels DIR                  # where PyPI answers

Made for a GPU machine with no network whose image has Python 3.12 and CUDA builds of jax,
jaxlib, flax, optax, jaxtyping, matplotlib, fonttools and pillow. What else the check needs
(the pinned font packages, tqdm, pytest) travels as wheels in ``--wheels``: they are installed
into a temporary folder (pip install --no-index --find-links), and the run refuses, naming
each package, if one is missing and has no wheel. ipywidgets is not carried: only the
notebooks import it. scriptlab runs from this source tree on the image's JAX.

In order, the run: installs what the image lacks; runs the unit tests that exercise the
numerics (``NUMERICS_TESTS``; at tiny size one analytic test of each file, ``TINY_TESTS``);
prints the device, JAX's version and the device memory; renders a small dataset and trains
the baseline recipe for one epoch; then times each benchmark on the accelerator and on the
CPU in the same process (``jax.default_device``; inputs put on each device), at each size:
the train step, every saliency method, occlusion, EK-FAC fit + scores, TracIn, exact t-SNE
and three of the notebooks' heaviest cells. Each timing is a warm call (compiling reported
apart) unless the cold call alone was long. A size whose time, predicted from a smaller
size (time ~ size ** exponent), would pass the row's cap or the run's budget is reported as
"extrapolated"; out-of-memory is reported as "oom" and ends that row's larger sizes.

Numbers vs the CPU: the same parameters (trained once, copied to both devices) must give
the same maps, influence rankings and t-SNE affinities to the tolerances in ``TOLERANCES``.
On a machine without an accelerator both columns run on the CPU (the output says so).

Writes ``device_check.json`` and ``device_check.md`` (one markdown table) to ``--out``,
after every row, so a run cut short still leaves what it measured.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import importlib
import importlib.metadata
import json
import math
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = Path(__file__).resolve().parent

# What the GPU image provides (issue 29), and what the check does not import.
IMAGE_PROVIDES = (
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "jaxtyping",
    "matplotlib",
    "fonttools",
    "pillow",
)
NOT_NEEDED = ("ipywidgets",)  # the notebooks' widgets; nothing in this check imports it
TEST_RUNNER = ("pytest", "iniconfig", "pluggy", "packaging", "pygments")
IMAGE_PYTHON = "3.12"
CARRY_LIMIT = 64 * 2**20  # wheels + source tree travel to the device machine in 64 MiB

NUMERICS_TESTS = (
    "tests/test_model.py",
    "tests/test_saliency.py",
    "tests/test_occlusion.py",
    "tests/test_activations.py",
    "tests/test_influence.py",
    "tests/test_influence_wholenet.py",
    "tests/test_embedding.py",
)
# tiny size: one check against an independent answer per file (the whole list, without the slow
# tests, takes about 4 CPU-minutes on 2 cores; these 7 about 30 s)
TINY_TESTS = (
    "tests/test_model.py::test_vmap_over_images_matches_batch",
    "tests/test_saliency.py::test_linear_model_gradient_and_gradient_x_input_closed_form",
    "tests/test_occlusion.py::test_linear_model_closed_form",
    "tests/test_activations.py::test_hoyer_closed_forms",
    "tests/test_influence.py::test_hvp_of_quadratic_is_a_times_v",
    "tests/test_influence_wholenet.py::"
    "test_ekfac_is_the_exact_damped_inverse_for_one_dense_layer_and_one_example",
    "tests/test_embedding.py::test_joint_probabilities_symmetric_and_normalised",
)

# Agreement of the accelerator's numbers with the CPU's, from the same parameters and inputs.
# Maps: relative L2 error; the loose bound is for the default matmul precision, which on recent
# GPUs is TF32-class (10-bit mantissa), the tight one for precision "highest". Rankings: mean over
# test crops. t-SNE: a map is chaotic in its rounding (on 2 CPU cores, N = 2,000, a 1e-3 relative
# change of the inputs kept the input neighbours at 0.998 overlap, KL within 0.07 %,
# trustworthiness within 2e-4, but the maps' pairwise distances at Spearman 0.80 and their own
# 10 nearest neighbours at 0.40 overlap), so the input affinities and the map's quality are
# checked, and the map's pairwise-distance Spearman is reported without a bound.
TOLERANCES = {
    "maps_rel_l2": 1e-2,
    "maps_rel_l2_highest": 1e-4,
    "influence_spearman": 0.98,
    "influence_top10": 0.8,
    "tsne_input_knn": 0.95,
    "tsne_kl_rel": 0.02,
    "tsne_trust_abs": 0.01,
}


@dataclasses.dataclass(frozen=True)
class Plan:
    """The sizes of one run: ``tiny`` (CI on a 2-core CPU) or ``full`` (one GPU, under 8 min)."""

    render: dict  # data.load overrides of the rendered dataset
    step_configs: tuple[tuple[int, int], ...]  # (micro_batch, batch) of each train-step row
    step_reps: int
    saliency_n: tuple[int, ...]
    saliency_probe: int | None
    occlusion_n: tuple[int, ...]
    influence_n: tuple[int, ...]  # training crops scored
    influence_probe: int | None
    influence_test: int  # test crops scored against
    tsne_n: tuple[int, ...]
    tsne_iter: int
    classviz_steps: int
    top_n: int
    sparsity_n: int
    tests: tuple[str, ...]
    test_timeout: float
    budget: float  # seconds for the whole run
    cap_acc: float  # longest single measurement on the accelerator
    cap_cpu: float  # and on the CPU
    long_call: float  # a cold call longer than this is not repeated
    matmul_n: int


PLANS = {
    "tiny": Plan(
        render=dict(n_train=128, n_val=32, n_test=32),
        step_configs=((16, 64),),
        step_reps=3,
        saliency_n=(8,),
        saliency_probe=None,
        occlusion_n=(2,),
        influence_n=(64,),
        influence_probe=None,
        influence_test=8,
        tsne_n=(128, 256, 1024),
        tsne_iter=200,
        classviz_steps=8,
        top_n=32,
        sparsity_n=32,
        tests=TINY_TESTS,
        test_timeout=600.0,  # about 30 CPU-seconds; the margin is for a busy machine
        budget=1200.0,  # a guard only: on a busy machine the tiny run can take minutes
        cap_acc=30.0,
        cap_cpu=1.5,  # small on purpose: the largest t-SNE's CPU side is extrapolated
        long_call=30.0,
        matmul_n=256,
    ),
    "full": Plan(
        render=dict(n_train=2048, n_val=256, n_test=512),
        step_configs=((16, 64), (64, 64), (256, 256)),
        step_reps=30,
        saliency_n=(1000,),
        saliency_probe=100,
        occlusion_n=(16, 256),
        influence_n=(1000, 5000, 30_000),
        influence_probe=None,
        influence_test=100,
        tsne_n=(1000, 5000, 20_000, 50_000),
        tsne_iter=1000,
        classviz_steps=128,
        top_n=2000,
        sparsity_n=256,
        tests=NUMERICS_TESTS + ("-m", "not slow"),
        test_timeout=170.0,
        budget=460.0,
        cap_acc=150.0,
        cap_cpu=30.0,
        long_call=10.0,
        matmul_n=2048,
    ),
}


# ------------------------------------------------------------------------------- wheels


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _same_version(a: str, b: str) -> bool:
    """PEP 440 equality of plain release versions: "2.1" == "2.001" == "2.1.0"."""

    def release(v):
        parts = v.split(".")
        if not all(p.isdigit() for p in parts):
            return v
        nums = [int(p) for p in parts]
        while len(nums) > 1 and nums[-1] == 0:
            nums.pop()
        return tuple(nums)

    return release(a) == release(b)


def _split_requirement(req: str) -> tuple[str, str | None]:
    """("fontpkg-roboto==3.15") -> ("fontpkg-roboto", "3.15"); (">=" gives no pin)."""
    name = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", req).group(0)
    pin = re.search(r"==\s*([^\s,;]+)", req)
    return _canonical(name), pin.group(1) if pin else None


def carried_requirements() -> list[str]:
    """pyproject's dependencies the image does not provide, and the test runner."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    skip = {_canonical(n) for n in IMAGE_PROVIDES + NOT_NEEDED + ("numpy",)}  # numpy: jax's
    return [d for d in deps if _split_requirement(d)[0] not in skip] + list(TEST_RUNNER)


def missing_requirements(requirements: list[str]) -> list[str]:
    """The requirements not importable here (absent, or another version than pinned)."""
    missing = []
    for req in requirements:
        name, pin = _split_requirement(req)
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(req)
            continue
        if pin is not None and not _same_version(version, pin):
            missing.append(req)
    return missing


def find_wheel(wheel_dir: Path, requirement: str) -> Path | None:
    """The wheel in ``wheel_dir`` that satisfies ``requirement``'s name and pin, if any."""
    name, pin = _split_requirement(requirement)
    for wheel in sorted(wheel_dir.glob("*.whl")):
        dist, version = wheel.name.split("-")[:2]
        if _canonical(dist) == name and (pin is None or _same_version(version, pin)):
            return wheel
    return None


def install_missing(wheel_dir: Path | None, site: Path) -> list[str]:
    """Install every carried requirement the image lacks into ``site`` and put it on the path.

    Raises:
      SystemExit: naming each missing package that has no wheel in ``wheel_dir``.
    """
    missing = missing_requirements(carried_requirements())
    if not missing:
        return []
    wheels = {r: find_wheel(wheel_dir, r) if wheel_dir else None for r in missing}
    absent = [r for r, w in wheels.items() if w is None]
    if absent:
        where = f"in {wheel_dir}" if wheel_dir else "(no --wheels folder given)"
        raise SystemExit(
            f"device_check: {len(absent)} package(s) missing from this Python and without a wheel "
            f"{where}: {', '.join(absent)}. Fill a folder with `python benchmarks/device_check.py "
            "--download-wheels DIR` where PyPI is reachable, carry it, and pass --wheels DIR."
        )
    site.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "install", "--no-index", "--find-links", str(wheel_dir)]
    cmd += ["--no-deps", "--quiet", "--target", str(site), *missing]
    if subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True).returncode:
        for wheel in wheels.values():  # no pip in the image: every carried wheel is pure Python
            with zipfile.ZipFile(wheel) as z:
                z.extractall(site)
    else:
        subprocess.run(cmd, check=True)
    sys.path.insert(0, str(site))
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(site), os.environ.get("PYTHONPATH")) if p
    )
    importlib.invalidate_caches()
    return missing


def _tree_bytes() -> int:
    """Bytes of the source tree as it travels: the files git tracks."""
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
    files = [ROOT / f for f in out.stdout.decode().split("\0") if f]
    return sum(f.stat().st_size for f in files if f.is_file())


def download_wheels(wheel_dir: Path) -> dict:
    """Fill ``wheel_dir`` with the carried requirements' wheels (pure Python, for Python 3.12)."""
    wheel_dir.mkdir(parents=True, exist_ok=True)
    reqs = []
    for req in carried_requirements():
        name, pin = _split_requirement(req)
        if pin is None:  # pin what this environment runs, so both ends run the same code
            with contextlib.suppress(importlib.metadata.PackageNotFoundError):
                req = f"{name}=={importlib.metadata.version(name)}"
        reqs.append(req)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    cmd += ["--python-version", IMAGE_PYTHON, "-d", str(wheel_dir), *reqs]
    subprocess.run(cmd, check=True)
    wheels = [find_wheel(wheel_dir, r) for r in reqs]
    lost = [r for r, w in zip(reqs, wheels, strict=True) if w is None]
    if lost:
        raise SystemExit(f"device_check: pip downloaded no wheel for {', '.join(lost)}")
    wheel_bytes = sum(w.stat().st_size for w in wheels)
    tree = _tree_bytes()
    sizes = {"wheels": len(wheels), "wheel_bytes": wheel_bytes, "tree_bytes": tree}
    total = wheel_bytes + tree
    print(
        f"{len(wheels)} wheels in {wheel_dir}: {wheel_bytes / 2**20:.1f} MiB; source tree "
        f"{tree / 2**20:.1f} MiB; together {total / 2**20:.1f} MiB "
        f"({'under' if total < CARRY_LIMIT else 'OVER'} the {CARRY_LIMIT // 2**20} MiB limit)"
    )
    return sizes


# ------------------------------------------------------------------------------- unit tests


def run_tests(args: tuple[str, ...], timeout: float) -> dict:
    """The numerics unit tests in a child process (this process has not claimed a GPU yet)."""
    cmd = [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", *args]
    t0 = time.perf_counter()
    child = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True, env={**os.environ, "PYTHONPATH": _pythonpath()},
    )  # fmt: skip
    timed_out = False
    try:
        output, _ = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(child.pid, signal.SIGKILL)  # its group: pytest and the renderers it started
        output, _ = child.communicate()
    outcomes = re.findall(
        r"^(tests/\S+?::.+?) (PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b", output, re.M
    )
    counts = {k: sum(o == k for _, o in outcomes) for k in ("PASSED", "FAILED", "ERROR")}
    return {
        "args": list(args),
        "passed": counts["PASSED"],
        "failed": counts["FAILED"],
        "errors": counts["ERROR"],
        "skipped": sum(o == "SKIPPED" for _, o in outcomes),
        "failures": [t for t, o in outcomes if o in ("FAILED", "ERROR")],
        "returncode": None if timed_out else child.returncode,
        "timed_out": timed_out,
        "seconds": time.perf_counter() - t0,
        "tail": output[-2000:] if timed_out or child.returncode else "",
    }


def _pythonpath() -> str:
    return os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)


# ------------------------------------------------------------------------------- measuring


class Measure(NamedTuple):
    """One benchmark on one device at one size: how it went and what it cost.

    Attributes:
      status: "ok", "extrapolated", "skipped", "oom" or "error".
      seconds: the warm call (or, when extrapolated, the estimate); None if not run.
      compile_seconds: the cold call minus the warm one; None when only one call ran.
      peak_bytes: the device's peak memory in use after the call (a running maximum).
      peak_new: whether this call raised that peak (if not, it used at most that much).
      note: why it was not run, or what the time includes.
    """

    status: str
    seconds: float | None = None
    compile_seconds: float | None = None
    peak_bytes: int | None = None
    peak_new: bool = False
    note: str = ""


class Check(NamedTuple):
    """One agreement check: ``value`` against ``limit`` (``above``: value must be >= limit)."""

    metric: str
    value: float
    limit: float | None
    above: bool = False

    @property
    def passed(self) -> bool:
        if self.limit is None:
            return True
        return bool(self.value >= self.limit if self.above else self.value <= self.limit)

    def text(self) -> str:
        if self.limit is None:
            return f"{self.metric} {self.value:.3g} (no bound)"
        sign = ">=" if self.above else "<="
        verdict = "pass" if self.passed else "FAIL"
        return f"{self.metric} {self.value:.3g} {sign} {self.limit:g} {verdict}"


@dataclasses.dataclass(frozen=True)
class Bench:
    """A library call timed at each size on both devices.

    ``setup(device, size)`` runs under ``jax.default_device(device)``, puts its inputs there and
    returns a thunk; the thunk returns outputs to compare, or with ``self_timed`` its own seconds.
    """

    name: str
    sizes: tuple[int, ...]
    setup: Callable[[Any, int], Callable[[], Any]]
    size_label: Callable[[int], str] = lambda n: f"{n:,}"
    exponent: float = 1.0  # time ~ size ** exponent, to extrapolate
    probe: int | None = None  # a smaller size run first on the CPU, to predict the others
    compare: Callable[[Any, Any], list[Check]] | None = None
    self_timed: bool = False
    items: Callable[[int], int] | None = None  # images per call, to report a rate
    cap_acc: float | None = None  # overrides the plan's caps
    cap_cpu: float | None = None


class Clock:
    """The run's deadline."""

    def __init__(self, budget: float):
        self.start = time.perf_counter()
        self.budget = budget

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.budget - self.elapsed()


def is_oom(err: BaseException) -> bool:
    """XLA's RESOURCE_EXHAUSTED (device memory) or the host running out."""
    text = str(err)
    return isinstance(err, MemoryError) or "RESOURCE_EXHAUSTED" in text or "out of memory" in text


def peak_bytes(device) -> int | None:
    """The device's peak memory in use so far (None where JAX keeps no count, as on CPU)."""
    stats = device.memory_stats()
    return None if not stats else stats.get("peak_bytes_in_use")


def time_call(thunk: Callable[[], Any], long_call: float) -> tuple[Any, float, float | None]:
    """(outputs, warm seconds, compile seconds): a cold call, then the best of up to 3 warm."""
    import jax

    t0 = time.perf_counter()
    out = jax.block_until_ready(thunk())
    cold = time.perf_counter() - t0
    if cold > long_call:
        return out, cold, None
    best = math.inf
    for _ in range(3 if cold < 1.0 else 1):
        t0 = time.perf_counter()
        out = jax.block_until_ready(thunk())
        best = min(best, time.perf_counter() - t0)
    return out, best, max(cold - best, 0.0)


def predict(known: list[tuple[int, float]], n: int, exponent: float) -> float | None:
    """Seconds at size n from the largest size measured, as time ~ size ** exponent."""
    if not known:
        return None
    n0, t0 = max(known)
    return t0 * (n / n0) ** exponent


def measure(bench: Bench, device, n: int, plan: Plan, last_peak: dict) -> tuple[Measure, Any]:
    """Run ``bench`` once at size n on ``device``; OOM and errors become a Measure."""
    import jax

    try:
        with jax.default_device(device):
            thunk = bench.setup(device, n)
            if bench.self_timed:
                out, seconds, compile_s = None, thunk(), None
            else:
                out, seconds, compile_s = time_call(thunk, plan.long_call)
                out = jax.device_get(out)
    except Exception as err:  # a failed row must not end a one-shot GPU run
        gc.collect()
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        status = "oom" if is_oom(err) else "error"
        return Measure(status, note=f"{type(err).__name__}: {first}"), None
    peak = peak_bytes(device)
    new = peak is not None and peak > last_peak.get(device, -1)
    if peak is not None:
        last_peak[device] = max(peak, last_peak.get(device, -1))
    note = "" if compile_s is not None or bench.self_timed else "one cold call (compile included)"
    return Measure("ok", seconds, compile_s, peak, new, note), out


def run_side(bench: Bench, device, side: str, plan: Plan, clock: Clock, last_peak: dict):
    """Every size of ``bench`` on one device: ({size: Measure}, {size: outputs}, probe Measure)."""
    probing = side == "cpu" or device.platform == "cpu"
    cap = (bench.cap_cpu or plan.cap_cpu) if side == "cpu" else (bench.cap_acc or plan.cap_acc)
    known: list[tuple[int, float]] = []
    measures, outputs, probe = {}, {}, None
    if probing and bench.probe is not None and bench.probe < bench.sizes[0]:
        probe, _ = measure(bench, device, bench.probe, plan, last_peak)
        if probe.status == "ok":
            known.append((bench.probe, probe.seconds))
    stop = ""
    for n in bench.sizes:
        guess = predict(known, n, bench.exponent)
        limit = min(cap, clock.left())
        if stop:
            measures[n] = Measure("skipped", note=stop)
        elif guess is not None and guess > limit:
            basis = max(known)[0]
            note = f"from {bench.size_label(basis)}: over the {limit:.0f} s left for it"
            measures[n] = Measure("extrapolated", guess, note=note)
        elif clock.left() < 5.0:
            measures[n] = Measure("skipped", note="the run's time budget is spent")
        else:
            measures[n], out = measure(bench, device, n, plan, last_peak)
            if measures[n].status == "ok":
                known.append((n, measures[n].seconds))
                outputs[n] = out
            elif measures[n].status == "oom":
                stop = f"out of memory at {bench.size_label(n)}"
            else:
                stop = f"failed at {bench.size_label(n)}"
    return measures, outputs, probe


def run_bench(bench: Bench, devices: dict, plan: Plan, clock: Clock, last_peak: dict) -> dict:
    """One row group: both devices, every size, and the agreement at the smallest common size."""
    sides, outputs, probes = {}, {}, {}
    for side, device in devices.items():
        sides[side], outputs[side], probes[side] = run_side(
            bench, device, side, plan, clock, last_peak
        )
    checks: list[Check] = []
    common = [n for n in bench.sizes if n in outputs["accelerator"] and n in outputs["cpu"]]
    if bench.compare is not None and common:
        checks = bench.compare(outputs["accelerator"][common[0]], outputs["cpu"][common[0]])
    rows = []
    for n in bench.sizes:
        acc, cpu = sides["accelerator"][n], sides["cpu"][n]
        ratio = cpu.seconds / acc.seconds if acc.seconds and cpu.seconds else None
        items = bench.items(n) if bench.items else None
        rows.append(
            {
                "name": bench.name,
                "size": n,
                "size_label": bench.size_label(n),
                "items": items,
                "accelerator": acc._asdict(),
                "cpu": cpu._asdict(),
                "cpu_over_accelerator": ratio,
                "checks": [c._asdict() | {"passed": c.passed} for c in checks]
                if common and n == common[0]
                else [],
            }
        )
    probe = {s: p._asdict() | {"size": bench.probe} for s, p in probes.items() if p is not None}
    if probe:
        rows[0]["probe"] = probe
    return {"rows": rows}


# ------------------------------------------------------------------------------- comparisons


def rel_l2(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def max_abs(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def top_k_overlap(a, b, k: int) -> float:
    """Mean over rows of |top-k of a & top-k of b| / k (largest values)."""
    a, b = np.asarray(a), np.asarray(b)
    ta, tb = np.argsort(-a, axis=-1)[:, :k], np.argsort(-b, axis=-1)[:, :k]
    return float(np.mean([len(set(p) & set(q)) / k for p, q in zip(ta, tb, strict=True)]))


def set_overlap(a, b) -> float:
    """Mean over rows of the share of a row's entries found in the same row of ``b``."""
    a, b = np.asarray(a), np.asarray(b)
    return float(np.mean([len(set(p) & set(q)) / len(p) for p, q in zip(a, b, strict=True)]))


def spearman_rows(a, b) -> float:
    """Mean Spearman rank correlation of matching rows (``sanity.spearman``, on the CPU)."""
    import jax

    from scriptlab.interpret.sanity import spearman

    with jax.default_device(jax.devices("cpu")[0]):
        return float(np.mean(np.asarray(spearman(np.asarray(a), np.asarray(b)))))


def maps_agree(a, b, *, key: str = "maps_rel_l2") -> list[Check]:
    return [
        Check("rel. L2", rel_l2(a, b), TOLERANCES[key]),
        Check("max abs diff", max_abs(a, b), None),
    ]


def rankings_agree(a, b) -> list[Check]:
    """Influence scores [test, train]: each test crop's ranking of the training crops."""
    return [
        Check("Spearman", spearman_rows(a, b), TOLERANCES["influence_spearman"], above=True),
        Check("top-10 overlap", top_k_overlap(a, b, 10), TOLERANCES["influence_top10"], above=True),
        Check("rel. L2", rel_l2(a, b), None),
    ]


def tsne_agree(a, b) -> list[Check]:
    """Two t-SNE results of the same points: input neighbours, KL, trustworthiness, layout."""
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    pairs = rng.integers(0, len(a["embedding"]), (5000, 2))

    def dist(y):
        return np.linalg.norm(y[pairs[:, 0]] - y[pairs[:, 1]], axis=1)

    kl_rel = abs(a["kl"] - b["kl"]) / abs(b["kl"])
    layout = float(spearmanr(dist(a["embedding"]), dist(b["embedding"]))[0])
    return [
        Check("input kNN overlap", set_overlap(a["neighbors"], b["neighbors"]),
              TOLERANCES["tsne_input_knn"], above=True),
        Check("KL rel. diff", float(kl_rel), TOLERANCES["tsne_kl_rel"]),
        Check("trustworthiness diff", abs(a["trust"] - b["trust"]), TOLERANCES["tsne_trust_abs"]),
        Check("map distances Spearman", layout, None),
    ]  # fmt: skip


# ------------------------------------------------------------------------------- the run


class Model(NamedTuple):
    """The model every benchmark uses: trained once, kept on the host."""

    params: Any  # host copy (numpy leaves)
    apply_fn: Any
    snapshots: list  # (epoch, host params) at the start (0) and after each epoch
    learning_rates: np.ndarray  # of the snapshots after epoch 0


def render_dataset(plan: Plan, synthetic: bool):
    """The small dataset, rendered (or random crops where the image cannot shape text)."""
    from scriptlab import data

    info: dict[str, Any] = {"synthetic": synthetic}
    t0 = time.perf_counter()
    if not synthetic:
        try:
            ds = data.load("smoke", seed=0, progress=False, cache=False, **_no_extra_splits(plan))
        except RuntimeError as err:  # e.g. Pillow without raqm: the timings hold all the same
            info.update(synthetic=True, error=f"{type(err).__name__}: {err}")
    if info["synthetic"]:
        ds = synthetic_dataset(plan)
    n = sum(len(s) for s in ds.splits.values())
    info.update(crops=n, seconds=time.perf_counter() - t0)
    return ds, info


def _no_extra_splits(plan: Plan) -> dict:
    return {"n_conflict": 0, "n_heldout": 0, "n_val_conflict": 0, **plan.render}


def synthetic_dataset(plan: Plan):
    """Random uint8 crops with random labels, in the rendered dataset's shapes."""
    from scriptlab import data, fonts

    cfg = data.make_config("smoke", **_no_extra_splits(plan))
    rng = np.random.default_rng(0)
    h, w = cfg.image_size

    def split(n):
        given = {
            "images": rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8),
            "masks": np.zeros((n, h, w), bool),
            "script": rng.integers(0, len(fonts.SCRIPTS), n).astype(np.int32),
            "style": rng.integers(0, len(fonts.STYLES), n).astype(np.int32),
            "text": np.array([""] * n),
        }  # the other per-crop records (family, colours, ...) are never read here
        return data.Split(**{f: given.get(f, np.zeros(n, np.int32)) for f in data.Split._fields})

    splits = {name: split(n) for name, n in cfg.sizes().items()}
    return data.Dataset(cfg, splits, fonts.SCRIPTS, fonts.STYLES, ("random",))


def train_one_epoch(ds) -> tuple[Model, dict]:
    """The baseline recipe, one epoch, on the default device (the accelerator)."""
    import jax

    from scriptlab import model as model_lib
    from scriptlab import train, zoo

    cfg = zoo.config("baseline", preset="smoke", epochs=1)
    t0 = time.perf_counter()
    result = train.train(cfg, ds, progress=False)
    seconds = time.perf_counter() - t0
    params, apply_fn = model_lib.functional(result.model)
    n = len(ds.train)
    images = (n // cfg.batch_size) * cfg.batch_size
    epochs = [e for e, _ in result.snapshots[1:]]
    info = {
        "crops": n,
        "images": images,
        "seconds": seconds,
        "images_per_s": images / seconds,
        "val_script_acc": result.history[-1]["val_script_acc"],
        "note": "compiling the step and the validation pass included",
    }
    model = Model(
        jax.device_get(params),
        apply_fn,
        [(e, jax.device_get(p)) for e, p in result.snapshots],
        np.asarray(train.epoch_learning_rates(cfg, n, epochs)),
    )
    return model, info


def device_info(acc, cpu, plan: Plan) -> dict:
    import jax
    import jaxlib
    from bench_train import matmul_peak

    def peak(device):
        with jax.default_device(device):
            return matmul_peak(plan.matmul_n, 10)

    stats = acc.memory_stats() or {}
    return {
        "accelerator_is_cpu": acc.platform == "cpu",
        "platform": acc.platform,
        "kind": acc.device_kind,
        "count": jax.device_count(),
        "memory_bytes": stats.get("bytes_limit"),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "flax": importlib.metadata.version("flax"),
        "python": platform.python_version(),
        "host_cpus": os.cpu_count(),
        "host_memory_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
        "matmul_gflops": {"accelerator": peak(acc) / 1e9, "cpu": peak(cpu) / 1e9},
    }


def benches(plan: Plan, ds, model: Model) -> list[Bench]:
    """Every row group, in the order they run (roughly rising memory)."""
    import jax
    from bench_train import real_step_rate
    from bench_tsne import clustered

    from scriptlab.interpret import classviz, saliency
    from scriptlab.interpret import embedding as E
    from scriptlab.interpret import influence as inf
    from scriptlab.interpret.activations import sparsity_curve
    from scriptlab.interpret.occlusion import occlusion
    from scriptlab.interpret.receptive import top_activating

    apply_fn = model.apply_fn

    def put(tree, device):
        return jax.device_put(tree, device)

    def tile(images, n):  # the rendered crops repeated up to n rows (timing does not need more)
        return np.resize(images, (n, *images.shape[1:]))

    test = ds.test
    crops = lambda n: tile(test.images, n)
    targets = lambda n: np.resize(test.script, n).astype(np.int32)
    out: list[Bench] = []

    for micro, batch in plan.step_configs:

        def step(device, n, micro=micro):
            reps = plan.step_reps
            return lambda: n * reps / real_step_rate(micro, n, reps)

        out.append(
            Bench(
                f"train step, baseline recipe, {batch // micro} x {micro} rows",
                (batch,),
                step,
                size_label=lambda n: f"batch {n}",
                self_timed=True,
                items=lambda n: n * plan.step_reps,
            )
        )

    def saliency_bench(method, precision=None):
        def setup(device, n):
            p = put(model.params, device)
            x, t = crops(n), targets(n)
            if precision is None:
                return lambda: saliency.saliency(apply_fn, p, x, t, method=method)

            def call():
                with jax.default_matmul_precision(precision):
                    return saliency.saliency(apply_fn, p, x, t, method=method)

            return call

        label = f"saliency {method}" + (f", matmul precision {precision}" if precision else "")
        key = "maps_rel_l2_highest" if precision else "maps_rel_l2"
        return Bench(
            label,
            plan.saliency_n,
            setup,
            size_label=lambda n: f"{n:,} crops",
            probe=plan.saliency_probe,
            compare=lambda a, b: maps_agree(a, b, key=key),
        )

    out += [saliency_bench(m) for m in saliency.METHODS]
    out.append(saliency_bench("gradient", "highest"))

    def occlusion_setup(device, n):
        p = put(model.params, device)
        x, t = crops(n), targets(n)
        return lambda: occlusion(apply_fn, p, x, t, patch=8, stride=2, batch_size=256).scores

    out.append(
        Bench(
            "occlusion 8x8, stride 2",
            plan.occlusion_n,
            occlusion_setup,
            size_label=lambda n: f"{n:,} crops",
            compare=maps_agree,
        )
    )

    n_max = max(plan.influence_n)
    train_x = tile(ds.train.images, n_max)
    train_y = np.resize(ds.train.script, n_max).astype(np.int32)
    test_x = crops(plan.influence_test)
    test_y = targets(plan.influence_test)
    unique = len(ds.train)  # columns past this repeat earlier crops, and ties would blur rankings

    def influence_compare(a, b):
        return rankings_agree(a[:, :unique], b[:, :unique])

    def tracin_setup(device, n):
        ckpts = put([p for e, p in model.snapshots if e > 0], device)
        loss = inf.layerwise_loss(apply_fn, "script")
        x, y = train_x[:n], train_y[:n]
        lrs = model.learning_rates
        return lambda: inf.tracin_scores(
            loss, ckpts, x, y, test_x, test_y, learning_rates=lrs, batch_size=128
        )

    def ekfac_setup(device, n):
        p = put(model.params, device)
        loss = inf.layerwise_loss(apply_fn, "script")
        x, y = train_x[:n], train_y[:n]

        def call():
            f = inf.fit_ekfac(loss, p, x, batch_size=128)
            return inf.ekfac_scores(
                loss, p, x, y, test_x, test_y, factors=f, l2=0.0, batch_size=128
            )

        return call

    per = f" x {plan.influence_test} test"
    for name, setup in (("TracIn, last snapshot", tracin_setup), ("EK-FAC fit + scores", ekfac_setup)):  # fmt: skip
        out.append(
            Bench(
                name,
                plan.influence_n,
                setup,
                size_label=lambda n: f"{n:,}{per}",
                probe=plan.influence_probe,
                compare=influence_compare,
            )
        )

    def tsne_setup(device, n):
        x = clustered(n)
        early = min(250, plan.tsne_iter // 4)

        def call():
            r = E.tsne(
                x, n_iter=plan.tsne_iter, exaggeration_iter=early, record_every=plan.tsne_iter
            )
            return {"embedding": r.embedding, "kl": r.kl, "neighbors": r.affinities.neighbors}

        return call

    def tsne_compare(a, b):
        n = len(a["embedding"])
        x = clustered(n)
        with jax.default_device(jax.devices("cpu")[0]):
            trust = [float(E.trustworthiness(x, r["embedding"])) for r in (a, b)]
        return tsne_agree({**a, "trust": trust[0]}, {**b, "trust": trust[1]})

    out.append(
        Bench(
            f"exact t-SNE, {plan.tsne_iter} iterations",
            plan.tsne_n,
            tsne_setup,
            size_label=lambda n: f"N = {n:,}",
            exponent=2.0,
            compare=tsne_compare,
        )
    )

    def classviz_setup(device, n):
        p = put(model.params, device)
        return lambda: classviz.class_model(apply_fn, p, steps=n, jitter=2, tv=2e-3).images

    def top_setup(device, n):
        p = put(model.params, device)
        x = crops(n)
        return lambda: top_activating(apply_fn, p, x, "conv3", k=9).index

    def sparsity_setup(device, n):
        snaps = put(model.snapshots, device)
        x = crops(n)
        return lambda: sparsity_curve(apply_fn, snaps, x)[1]

    out += [
        Bench(
            "notebook 04: class_model, every script class",
            (plan.classviz_steps,),
            classviz_setup,
            size_label=lambda n: f"{n} steps",
        ),
        Bench(
            "notebook 08: top_activating conv3, k = 9",
            (plan.top_n,),
            top_setup,
            size_label=lambda n: f"{n:,} crops",
        ),
        Bench(
            f"notebook 06: sparsity_curve, {len(model.snapshots)} snapshots, every layer",
            (plan.sparsity_n,),
            sparsity_setup,
            size_label=lambda n: f"{n:,} crops",
        ),
    ]
    return out


# ------------------------------------------------------------------------------- reporting


def _seconds(m: dict) -> str:
    if m["status"] == "ok":
        return f"{m['seconds']:.3g} s"
    if m["status"] == "extrapolated":
        return f"~{m['seconds']:.3g} s (extrapolated)"
    return m["status"]


def _cell(m: dict, items: int | None) -> str:
    if items and m["status"] in ("ok", "extrapolated") and m["seconds"]:
        rate = f"{items / m['seconds']:,.0f} img/s"
        return rate if m["status"] == "ok" else f"~{rate} (extrapolated)"
    return _seconds(m)


def _memory(m: dict) -> str:
    if m["status"] != "ok" or m["peak_bytes"] is None:
        return "n/a"
    mib = f"{m['peak_bytes'] / 2**20:,.0f} MiB"
    return mib if m["peak_new"] else f"<= {mib}"


def _ratio(row: dict) -> str:
    r = row["cpu_over_accelerator"]
    if r is None:
        return "n/a"
    extrapolated = "extrapolated" in (row["accelerator"]["status"], row["cpu"]["status"])
    return f"~{r:.3g}x (extrapolated)" if extrapolated else f"{r:.3g}x"


def markdown(report: dict) -> str:
    d, lines = report["device"], []
    gib = lambda b: f"{b / 2**30:.1f} GiB" if b else "memory n/a"
    flops = d.get("matmul_gflops", {})
    if d.get("accelerator_is_cpu"):
        lines.append(
            "- accelerator: none. JAX's default device is the CPU, so both columns ran on the "
            "CPU (ratios ~1; the agreement checks compare the CPU with itself)"
        )
    elif d:
        lines.append(
            f"- accelerator: {d['kind']} ({d['platform']}, {d['count']} device(s), "
            f"{gib(d['memory_bytes'])}), matmul peak {flops.get('accelerator', 0):,.0f} GFLOP/s"
        )
    if d:
        lines.append(
            f"- CPU: {d['host_cpus']} cores, {gib(d['host_memory_bytes'])}, matmul peak "
            f"{flops.get('cpu', 0):,.0f} GFLOP/s (XLA:CPU, same process)"
        )
        lines.append(
            f"- jax {d['jax']}, jaxlib {d['jaxlib']}, flax {d['flax']}, Python {d['python']}"
        )
    if ds := report.get("dataset"):
        kind = "random crops (rendering failed: " + ds["error"] + ")" if ds.get("error") else "crops rendered"  # fmt: skip
        lines.append(f"- dataset: {ds['crops']:,} {kind} in {ds['seconds']:.1f} s")
    if tr := report.get("training"):
        lines.append(
            f"- one epoch of the baseline recipe on {tr['crops']:,} crops: {tr['seconds']:.1f} s, "
            f"{tr['images_per_s']:,.0f} img/s ({tr['note']}); val script accuracy "
            f"{tr['val_script_acc']:.3f}"
        )
    if t := report.get("tests"):
        state = " (timed out)" if t["timed_out"] else ""
        failed = f": {', '.join(t['failures'])}" if t["failures"] else ""
        lines.append(
            f"- unit tests ({' '.join(t['args'])}): {t['passed']} passed, {t['failed']} failed, "
            f"{t['errors']} errors, {t['skipped']} skipped in {t['seconds']:.0f} s{state}{failed}"
        )
    lines.append(
        f"- wall time {report['wall_seconds']:.0f} s of a {report['budget']:.0f} s budget "
        f"({report['cpu_seconds']:.0f} CPU-seconds); "
        "time = warm call (compiling apart) unless noted; peak memory is the device's running "
        "peak after the call (<= where the call did not raise it)"
    )
    lines += [
        "",
        "| benchmark | size | accelerator | CPU | CPU / accelerator | accelerator peak memory "
        "| numbers vs CPU |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        acc, cpu = row["accelerator"], row["cpu"]
        notes = "; ".join(
            f"{side}: {m['note']}" for side, m in (("acc.", acc), ("CPU", cpu)) if m["note"]
        )
        checks = "; ".join(Check(c["metric"], c["value"], c["limit"], c["above"]).text() for c in row["checks"])  # fmt: skip
        lines.append(
            f"| {row['name']} | {row['size_label']} | {_cell(acc, row['items'])} "
            f"| {_cell(cpu, row['items'])} | {_ratio(row)} | {_memory(acc)} "
            f"| {'; '.join(x for x in (checks, notes) if x)} |"
        )
    head = f"# Device check, size {report['size']}\n\n"
    return head + "\n".join(lines) + "\n"


def write(report: dict, out: Path) -> None:
    report["wall_seconds"] = report["clock"].elapsed()
    t = os.times()  # CPU seconds of this process and its finished children (the test run)
    report["cpu_seconds"] = t.user + t.system + t.children_user + t.children_system
    data = {k: v for k, v in report.items() if k != "clock"}
    (out / "device_check.json").write_text(json.dumps(data, indent=1, allow_nan=False) + "\n")
    (out / "device_check.md").write_text(markdown(data))


def check(args) -> dict:
    """The whole run; returns the report (also written to ``args.out``)."""
    plan = PLANS[args.size]
    clock = Clock(plan.budget if args.budget is None else args.budget)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    site = Path(tempfile.mkdtemp(prefix="device_check_site_"))
    installed = install_missing(Path(args.wheels) if args.wheels else None, site)
    for path in (str(ROOT), str(BENCHMARKS)):  # scriptlab from this tree, and the bench_ modules
        sys.path.insert(0, path)
    report: dict[str, Any] = {"schema": 1, "size": args.size, "budget": clock.budget}
    report |= {"clock": clock, "installed": installed, "device": {}, "rows": []}
    print(f"installed from wheels: {', '.join(installed) or 'nothing (all present)'}", flush=True)
    if not args.skip_tests:  # before this process touches the GPU: the child gets all of it
        report["tests"] = run_tests(plan.tests, plan.test_timeout)
        print(f"unit tests: {report['tests']['passed']} passed, {report['tests']['failed']} failed, "
              f"{report['tests']['errors']} errors in {report['tests']['seconds']:.0f} s", flush=True)  # fmt: skip
    import jax

    acc, cpu = jax.devices()[0], jax.devices("cpu")[0]
    report["device"] = device_info(acc, cpu, plan)
    print(json.dumps(report["device"]), flush=True)
    ds, report["dataset"] = render_dataset(plan, args.synthetic_data)
    print(f"dataset: {report['dataset']}", flush=True)
    model, report["training"] = train_one_epoch(ds)
    print(f"one epoch: {report['training']}", flush=True)
    write(report, out)
    last_peak: dict = {}
    for bench in benches(plan, ds, model):
        result = run_bench(bench, {"accelerator": acc, "cpu": cpu}, plan, clock, last_peak)
        report["rows"] += result["rows"]
        for row in result["rows"]:
            print(f"{row['name']} [{row['size_label']}]: acc {_seconds(row['accelerator'])}, "
                  f"cpu {_seconds(row['cpu'])}, {[Check(**{k: c[k] for k in ('metric', 'value', 'limit', 'above')}).text() for c in row['checks']]}", flush=True)  # fmt: skip
        write(report, out)
    write(report, out)
    print(f"wrote {out / 'device_check.md'} and device_check.json in {clock.elapsed():.0f} s")
    return report


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--size", choices=tuple(PLANS), default="tiny")
    ap.add_argument("--out", help="folder for device_check.md and device_check.json")
    ap.add_argument("--wheels", help="folder of wheels for what this Python lacks")
    ap.add_argument("--download-wheels", metavar="DIR", help="fill DIR with those wheels and exit")
    ap.add_argument("--budget", type=float, help="seconds for the whole run (default: the size's)")
    ap.add_argument("--skip-tests", action="store_true", help="leave out the unit tests")
    ap.add_argument(
        "--synthetic-data", action="store_true", help="random crops instead of rendering text"
    )
    args = ap.parse_args(argv)
    if args.download_wheels:
        download_wheels(Path(args.download_wheels))
        return
    if not args.out:
        ap.error("--out is required (or --download-wheels DIR)")
    check(args)


if __name__ == "__main__":
    main()
