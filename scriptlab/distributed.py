"""Devices: the one place where scriptlab decides what runs where.

On one device (the default) nothing here changes a computation: training and
every transform run today's single-device code. Given more, scriptlab is data
parallel in the way JAX means it (the JAX sharding guide): a ``Mesh`` with one
axis, ``data``, over every device (every host's, after ``initialize``); batches
split along ``data``; parameters and optimiser state replicated; one
``jax.jit`` whose collectives (the gradient mean of a training step) the
compiler derives from those shardings. No ``pmap``, no hand-written ``pmean``.

    with distributed.data_parallel("all"):     # jax.set_mesh under the hood
        result = train.train(cfg)              # batches split across devices
        maps = interpret.vanilla_gradient(apply_fn, params, images, targets)

The active mesh is JAX's own (``jax.set_mesh``): a jitted function sees it while
tracing, and JAX compiles it anew for another mesh. Transforms route their
independent work (images, windows, training points, targets) through
``map_rows`` (a ``lax.map``, run per device with ``jax.shard_map``) or
``split_rows`` (a vmapped function, split by a sharding constraint). Under the
mesh ``jnp.asarray`` places new arrays on every device of it.

Multi-host: every process runs the same program; ``initialize`` joins them
(``jax.distributed.initialize``), each process feeds its own rows of a batch
(``shard_batch``, ``jax.make_array_from_process_local_data``), process 0 alone
writes files (``is_main_process``) and ``to_host`` gathers results on every
process. docs/scaling.md has the launch recipe.

References: JAX, "Distributed arrays and automatic parallelization" and
"Multi-process environments", https://docs.jax.dev/en/latest/.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

DATA = "data"  # the mesh axis batches are split along

# our names for what jax.distributed.initialize needs (JAX itself reads only the first)
ENV = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


def initialize() -> bool:
    """Join a multi-process run when the environment describes one; True if it did.

    A SLURM job step with more than one task is detected by JAX itself; otherwise
    all three of ``JAX_COORDINATOR_ADDRESS`` (host:port of process 0),
    ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` must be set. Neither: a
    single-process run, nothing is done. Call it before any other JAX work.
    CPU processes exchange data through gloo.
    """
    if jax.distributed.is_initialized():
        return True
    given = [name for name in ENV if os.environ.get(name)]
    slurm = int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1 and "SLURM_STEP_ID" in os.environ
    if not given and not slurm:
        return False
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if given:
        if len(given) != len(ENV):
            missing = [name for name in ENV if name not in given]
            raise ValueError(
                f"a multi-process run needs {', '.join(ENV)}; got {', '.join(given)}, "
                f"missing {', '.join(missing)}"
            )
        num, pid = (_env_int(name) for name in ENV[1:])
        jax.distributed.initialize(os.environ[ENV[0]], num_processes=num, process_id=pid)
    else:
        jax.distributed.initialize()
    return True


def _env_int(name: str) -> int:
    text = os.environ[name]
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {text!r}") from None


def check_devices(devices, *, name: str = "devices") -> str | int:
    """``"all"`` or a device count >= 1 (also as text, "4"), returned as "all" or int."""
    given = devices
    if isinstance(devices, str) and devices.strip().isdigit():
        devices = int(devices)
    ok = devices == "all" or (
        isinstance(devices, int | np.integer) and not isinstance(devices, bool) and devices >= 1
    )
    if not ok:
        raise ValueError(f"{name} must be 'all' or an integer >= 1, got {given!r}")
    if devices != "all" and devices > jax.device_count():
        raise ValueError(
            f"{name}={devices} asks for more devices than there are: {jax.device_count()} "
            f"({jax.devices()[0].platform}); use 'all' or a smaller number"
        )
    if devices != "all" and jax.process_count() > 1 and devices != jax.device_count():
        raise ValueError(
            f"{name}={devices}: a {jax.process_count()}-process run uses every device "
            f"({jax.device_count()}); pass 'all'"
        )
    return devices if devices == "all" else int(devices)


def make_mesh(devices: str | int = "all") -> Mesh:
    """A one-axis mesh (``data``) over all devices, or the first ``devices`` of them.

    After ``initialize`` "all" spans every process's devices. Each process's
    devices are contiguous along ``data``, so its rows of a batch are too.
    """
    count = check_devices(devices)
    chosen = jax.devices() if count == "all" else jax.devices()[: int(count)]
    chosen = sorted(chosen, key=lambda d: (d.process_index, d.id))
    return Mesh(np.array(chosen), (DATA,), axis_types=(AxisType.Auto,))


@contextlib.contextmanager
def data_parallel(devices: str | int | Mesh = "all") -> Iterator[Mesh]:
    """Within the block, training and the transforms split their batches over ``devices``.

    Sets the mesh with ``jax.set_mesh``; a one-device mesh sets nothing, so the
    block runs exactly the single-device code.

    Args:
      devices: "all", a device count, or a Mesh with a ``data`` axis.

    Yields:
      The mesh.
    """
    mesh = devices if isinstance(devices, Mesh) else make_mesh(devices)
    if DATA not in mesh.axis_names:
        raise ValueError(f"devices: the mesh needs a {DATA!r} axis, got axes {mesh.axis_names}")
    if mesh.shape[DATA] == 1:
        yield mesh
        return
    with jax.set_mesh(mesh):
        yield mesh


def active_mesh() -> Mesh | None:
    """The mesh set by ``data_parallel`` (or ``jax.set_mesh``) if its data axis spans
    more than one device, else None: the single-device path. Call outside jit."""
    mesh = jax.sharding.get_mesh()
    if mesh.empty or mesh.shape.get(DATA, 1) == 1:
        return None
    return mesh


def n_shards() -> int:
    """How many ways a batch is split while tracing (1: the single-device path)."""
    return jax.sharding.get_abstract_mesh().shape.get(DATA, 1)


def map_rows(fn: Callable, xs: Any, *, batch_size: int | None = None) -> Any:
    """``jax.lax.map(fn, xs, batch_size=batch_size)``, its rows split across the active mesh.

    One of the two helpers every batched transform routes its independent work
    through (``split_rows`` is the other); call it inside jit. With no mesh it
    is exactly ``lax.map``. With D devices the rows are padded to a multiple of
    D by repeating the last one (a valid input, so no NaN), each device runs
    that same ``lax.map`` over its own N/D rows (``jax.shard_map``), and the
    padded results are cut off before anything reduces over them. Each row's
    result is the single-device one, bit for bit.

    ``shard_map`` rather than a sharding constraint: XLA:CPU's partitioner
    (jax 0.10.2) returned wrong per-example parameter gradients from a vmapped
    ``jax.grad`` whose batch axis was constrained to ``data`` (rows off device
    0 came back partly zero; tests/distributed_checks.py compares every
    transform with its single-device result). ``check_vma=False``: ``fn`` may
    differentiate with respect to values it closes over (the parameters), and a
    replicated value's cotangent must stay per device, not be summed.

    Args:
      fn: a function of one row (a pytree of slices of ``xs``).
      xs: a pytree of arrays sharing a leading axis N.
      batch_size: rows vmapped together on each device (memory bound), or None.

    Returns:
      fn's outputs stacked, leading axis N; split along ``data`` when D divides N.
    """
    d = n_shards()
    if d == 1:
        return jax.lax.map(fn, xs, batch_size=batch_size)
    n, m = _rows(xs, d)
    rows = PartitionSpec(DATA)
    per_device = jax.shard_map(
        lambda block: jax.lax.map(fn, block, batch_size=batch_size),
        in_specs=rows,
        out_specs=rows,
        check_vma=False,
    )
    return _cut(per_device(jax.tree.map(lambda a: _pad_rows(a, d * m), xs)), n)


def split_rows(fn: Callable, xs: Any) -> Any:
    """``fn(xs)`` for a function of a whole batch whose rows are independent, split across the mesh.

    For vmapped functions (saliency, class models); ``map_rows`` says how rows
    are padded and cut. With no mesh it is exactly ``fn(xs)``. ``fn`` may draw
    random numbers shaped by the batch: JAX's threefry is partitionable, so the
    values do not depend on the split, and a draw over the padded batch starts
    with the draw over the real one (the counter is the flat element index).

    Args:
      fn: xs -> outputs, every output with the leading axis of ``xs``.
      xs: a pytree of arrays sharing a leading axis N.

    Returns:
      fn's outputs, leading axis N; split along ``data`` when D divides N.
    """
    d = n_shards()
    if d == 1:
        return fn(xs)
    n, m = _rows(xs, d)
    return _cut(_split(fn(_split(jax.tree.map(lambda a: _pad_rows(a, d * m), xs)))), n)


def _rows(xs: Any, d: int) -> tuple[int, int]:
    """(N, rows per device) of a batch over d devices."""
    n = jax.tree.leaves(xs)[0].shape[0]
    return n, -(-n // d)


def _cut(tree: Any, n: int) -> Any:
    return jax.tree.map(lambda a: a if a.shape[0] == n else a[:n], tree)


def _pad_rows(a: jax.Array, rows: int) -> jax.Array:
    extra = rows - a.shape[0]
    return a if extra == 0 else jnp.concatenate([a, jnp.repeat(a[-1:], extra, axis=0)])


def _split(tree: Any) -> Any:
    """Leading axis along ``data`` (a constraint: the compiler partitions the rest)."""
    return jax.tree.map(lambda a: jax.lax.with_sharding_constraint(a, PartitionSpec(DATA)), tree)


# --------------------------------------------------------------------------- placing arrays
def check_divides(name: str, size: int, mesh: Mesh) -> None:
    """Raise unless a global batch of ``size`` rows splits evenly over the mesh's devices."""
    d = mesh.shape[DATA]
    if size % d:
        raise ValueError(
            f"{name}={size} does not divide over {d} devices; pick a device count that "
            f"divides {size} or a {name} that is a multiple of {d}"
        )


def local_rows(size: int, mesh: Mesh) -> slice:
    """The rows of a global batch of ``size`` that this process feeds (all of them on one host)."""
    check_divides("batch size", size, mesh)
    mine = [
        i for i, dev in enumerate(mesh.devices.flat) if dev.process_index == jax.process_index()
    ]
    per = size // mesh.shape[DATA]
    return slice(mine[0] * per, (mine[-1] + 1) * per)


def shard_batch(local: Any, mesh: Mesh, size: int) -> Any:
    """A global batch of ``size`` rows split along ``data``, from this process's rows of it.

    Args:
      local: a pytree of numpy arrays, this process's ``local_rows(size, mesh)``.
      mesh: the mesh.
      size: the global batch size.

    Returns:
      jax.Arrays of leading axis ``size``, sharded ``PartitionSpec("data")``.
    """
    sharding = NamedSharding(mesh, PartitionSpec(DATA))
    return jax.tree.map(
        lambda a: jax.make_array_from_process_local_data(sharding, a, (size, *a.shape[1:])),
        local,
    )


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Every leaf copied whole onto every device of the mesh (parameters, optimiser state).

    Every process must pass the same values (each builds them from the same seed).
    """
    sharding = NamedSharding(mesh, PartitionSpec())

    def put(a):
        host = np.asarray(a)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(put, tree)


def to_host(tree: Any) -> Any:
    """numpy copies of a pytree's arrays, gathered from every process where they are split."""
    from jax.experimental import multihost_utils

    def get(a):
        if isinstance(a, jax.Array) and not a.is_fully_addressable and not a.is_fully_replicated:
            return np.asarray(multihost_utils.process_allgather(a, tiled=True))
        return np.asarray(a)

    return jax.tree.map(get, tree)


def is_main_process() -> bool:
    """True in process 0, the one that writes files (always True on one host)."""
    return jax.process_index() == 0


def sync(name: str) -> None:
    """Wait until every process reaches this point (nothing to wait for on one host)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
