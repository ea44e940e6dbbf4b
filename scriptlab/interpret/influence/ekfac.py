"""EK-FAC: an eigenvalue-corrected Kronecker-factored inverse Gauss-Newton for every layer.

For a linear layer s = W a (conv: at every position), the Gauss-Newton block
is approximated by a Kronecker product A (x) S with A = E[a a^T] (inputs, a 1
for the bias) and S = E[g g^T] (pre-activation gradients, labels sampled from
the model's own predictive distribution, so this is the Gauss-Newton matrix,
not the empirical Fisher). K-FAC inverts A (x) S; EK-FAC keeps its eigenbasis
Q_A (x) Q_S and replaces its eigenvalues by the exact diagonal of the
Gauss-Newton matrix in that basis, Lambda = E[(Q_A^T G Q_S)^2] over
per-example gradients G. Then

    (GN + lambda I)^-1 v  ~=  Q_A [ (Q_A^T V Q_S) / (Lambda + lambda) ] Q_S^T

layer by layer (block diagonal). The factors are fitted once
(``fit_ekfac``) and reused for any number of test points (``ekfac_scores``,
``ekfac_s_test``, ``ekfac_self_influence``).

Conventions follow ``losses.objective``: the curvature is that of the mean
training loss, lambda = l2 + damping, and scores are I_up,loss (< 0 helps),
comparable to ``influence_scores``. With ``damping=None`` each layer gets
0.1 x the mean of its corrected eigenvalues (Grosse et al. 2023's heuristic,
kronfluence's default).

References: George, Laurent, Bouthillier, Ballas & Vincent 2018 (EK-FAC),
https://arxiv.org/abs/1806.03884; Martens & Grosse 2015 (K-FAC),
https://arxiv.org/abs/1503.05671; Grosse & Martens 2016 (KFC, conv layers),
https://arxiv.org/abs/1602.01407; Grosse et al. 2023 (EK-FAC influence
functions), https://arxiv.org/abs/2308.03296; kronfluence (reference
implementation), https://github.com/pomonam/kronfluence.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Integer, PyTree

from scriptlab.interpret._common import (
    check_batch_size,
    check_choice,
    check_images,
    check_int,
    check_l2,
    check_nonneg,
    check_xy,
)
from scriptlab.interpret.influence.layers import (
    check_layerwise,
    logit_residual,
    matrices_to_params,
)
from scriptlab.interpret.influence.losses import map_chunks
from scriptlab.protocols import AnyArray, Image, LayerwiseLoss

LABELS = ("sampled", "expected", "true")


class EKFACFactors(NamedTuple):
    """Per-layer Kronecker eigenbases and corrected eigenvalues, keyed by layer name.

    Attributes:
      q_a: {layer: float32[d_in + 1, d_in + 1]} eigenvectors of E[a a^T].
      q_s: {layer: float32[out, out]} eigenvectors of E[g g^T].
      eigenvalues: {layer: float32[d_in + 1, out]} E[(Q_A^T G Q_S)^2], the
        Gauss-Newton diagonal in the Kronecker eigenbasis.
      n: float32[], the number of examples the factors were fitted on.
    """

    q_a: dict
    q_s: dict
    eigenvalues: dict
    n: jax.Array


# --------------------------------------------------------------------------- one layer
def kronecker_factors(
    a: Float[Array, "n s d"], g: Float[Array, "n k s o"], valid: Float[Array, " n"] | None = None
) -> tuple[Float[Array, "d d"], Float[Array, "o o"]]:
    """Sums of input and gradient outer products over examples, samples and positions.

    Args:
      a: float32[N, S, d_in + 1] layer inputs.
      g: float32[N, K, S, out] pre-activation gradients for K label draws.
      valid: float32[N] 0/1 weights (padding rows 0); default all 1.

    Returns:
      (A float32[d, d], S float32[out, out]): sum_n sum_s a a^T and
      sum_n sum_k sum_s g g^T (divide by N for the means; only the
      eigenvectors are used, so the scale does not matter).
    """
    w = jnp.ones(a.shape[0], a.dtype) if valid is None else valid
    return jnp.einsum("nsi,nsj,n->ij", a, a, w), jnp.einsum("nksi,nksj,n->ij", g, g, w)


def rotated_grads(
    q_a: Float[Array, "d d"],
    q_s: Float[Array, "o o"],
    a: Float[Array, "n s d"],
    g: Float[Array, "n k s o"],
) -> Float[Array, "n k d o"]:
    """Per-example gradients in the Kronecker eigenbasis: Q_A^T (sum_s a_s g_s^T) Q_S, float32[N, K, d, out]."""
    if a.shape[1] == 1:  # dense: rotate the factors, then one outer product
        return jnp.einsum("ni,nko->nkio", a[:, 0] @ q_a, g[:, :, 0] @ q_s)
    grad = jnp.einsum("nsi,nkso->nkio", a, g)  # conv: sum over positions first (cheaper)
    return jnp.einsum("ij,nkio,op->nkjp", q_a, grad, q_s)


def precondition(
    q_a: Float[Array, "d d"],
    q_s: Float[Array, "o o"],
    eigenvalues: Float[Array, "d o"],
    grads: Float[Array, "t d o"],
    damping,
) -> Float[Array, "t d o"]:
    """(Q_A (x) Q_S) diag(eigenvalues + damping)^-1 (Q_A (x) Q_S)^T applied to float32[T, d, out]."""
    rot = jnp.einsum("ij,tio,op->tjp", q_a, grads, q_s) / (eigenvalues + damping)
    return jnp.einsum("ij,tjp,op->tio", q_a, rot, q_s)


# --------------------------------------------------------------------------- the network
def _cotangents(logits, labels_mode, key, idx, targets):
    """Logit cotangents float32[B, K, C] whose outer products average to the output Hessian."""
    p = jax.nn.softmax(logits)
    if labels_mode == "expected":  # sum_c p_c (p - e_c)(p - e_c)^T = diag(p) - p p^T, exactly
        eye = jnp.eye(p.shape[-1], dtype=p.dtype)
        return jnp.sqrt(p)[:, :, None] * (p[:, None, :] - eye[None])
    if labels_mode == "true":
        return logit_residual(logits, targets)[:, None]
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(idx)
    y = jax.vmap(jax.random.categorical)(keys, logits)
    return logit_residual(logits, y)[:, None]


def _layer_data(loss_fn, labels_mode, params, key, chunk):
    images, targets, idx, valid = chunk
    _, inputs, logits, backward = loss_fn.forward(params, images)
    r = _cotangents(logits, labels_mode, key, idx, targets)
    grads = jax.vmap(backward, in_axes=1, out_axes=1)(r)  # [B, K, S, out] per layer
    return inputs, grads, valid


@functools.partial(jax.jit, static_argnames=("loss_fn", "labels_mode"))
def _covariance_chunk(loss_fn, labels_mode, params, key, chunk):
    inputs, grads, valid = _layer_data(loss_fn, labels_mode, params, key, chunk)
    out = [kronecker_factors(a, g, valid) for a, g in zip(inputs, grads, strict=True)]
    return jax.tree.map(lambda x: x[None], out)


@functools.partial(jax.jit, static_argnames=("loss_fn", "labels_mode"))
def _eigenvalue_chunk(loss_fn, labels_mode, params, key, q_a, q_s, chunk):
    inputs, grads, valid = _layer_data(loss_fn, labels_mode, params, key, chunk)
    out = [
        jnp.einsum("nkio,n->io", rotated_grads(qa, qs, a, g) ** 2, valid)
        for qa, qs, a, g in zip(q_a, q_s, inputs, grads, strict=True)
    ]
    return jax.tree.map(lambda x: x[None], out)


@jax.jit
def _eigenbases(sums, n):
    """Eigenvectors of every layer's A / n and S / n, in one program (ten separate eigh calls
    compile ten programs: about a second more on a first run)."""
    return [jnp.linalg.eigh(a / n)[1] for a, _ in sums], [
        jnp.linalg.eigh(s / n)[1] for _, s in sums
    ]


def fit_ekfac(
    loss_fn: LayerwiseLoss,
    params: PyTree,
    x: Image[AnyArray, " n *input"],
    y: Integer[AnyArray, " n"] | None = None,
    *,
    labels: str = "sampled",
    seed: int = 0,
    batch_size: int = 128,
) -> EKFACFactors:
    """Fit EK-FAC factors for every conv and dense layer of a network: two passes over ``x``.

    Pass 1 accumulates A and S and eigendecomposes them; pass 2 projects
    per-example gradients onto the eigenbasis for the corrected eigenvalues.
    Both passes draw the same labels (deterministic in ``seed``).

    Args:
      loss_fn: a ``scriptlab.protocols.LayerwiseLoss`` (``layerwise_loss(apply_fn, head)``):
        whose cross-entropy the curvature is of, and which layers it covers.
      params: the model's params (the trained model).
      x: float32[N, ...] in [0, 1] or uint8 (the training inputs).
      y: int[N] true labels; needed only for ``labels="true"``.
      labels: "sampled" (one label per example from the model's softmax: the
        Gauss-Newton matrix, Grosse et al. 2023), "expected" (all C labels
        weighted by their probability: the exact Gauss-Newton, C times the
        cost) or "true" (the empirical Fisher).
      seed: seed of the sampled labels.
      batch_size: examples per jitted chunk.

    Returns:
      EKFACFactors keyed by ``loss_fn.layers(params, x)``'s names.

    References: George et al. 2018, https://arxiv.org/abs/1806.03884; Grosse et al.
    2023, section 2.2, https://arxiv.org/abs/2308.03296.
    """
    check_choice("labels", labels, LABELS)
    seed = check_int("seed", seed)
    batch_size = check_batch_size(batch_size)
    x = check_images(x, name="x", keep_uint8=True)
    layers = check_layerwise(loss_fn, params, x)
    n = x.shape[0]
    if labels == "true":
        if y is None:
            raise ValueError('labels="true" needs y, the int[N] true labels (targets), got None')
        x, y = check_xy(x, y, "train")
    else:
        y = jnp.zeros(n, jnp.int32)
    chunk = (x, y, jnp.arange(n), jnp.ones(n, jnp.float32))
    key = jax.random.key(seed)
    fn = functools.partial(_covariance_chunk, loss_fn, labels)
    sums = _sum_rows(map_chunks(fn, chunk, batch_size, params, key))
    q_a, q_s = _eigenbases(sums, n)
    fn = functools.partial(_eigenvalue_chunk, loss_fn, labels)
    lam = _sum_rows(map_chunks(fn, chunk, batch_size, params, key, q_a, q_s))
    names = [layer.name for layer in layers]
    return EKFACFactors(
        dict(zip(names, q_a, strict=True)),
        dict(zip(names, q_s, strict=True)),
        dict(zip(names, _divide(lam, n), strict=True)),
        jnp.float32(n),
    )


@jax.jit
def _sum_rows(tree):
    """The chunks' partial sums added up, every layer in one program."""
    return jax.tree.map(lambda x: x.sum(0), tree)


@jax.jit
def _divide(tree, n):
    return jax.tree.map(lambda x: x / n, tree)


def _damping(factors: EKFACFactors, l2, damping) -> dict:
    if damping is None:
        return {k: l2 + 0.1 * jnp.mean(v) for k, v in factors.eigenvalues.items()}
    return {k: l2 + damping for k in factors.eigenvalues}


def _check_factors(factors, layers, loss_fn):
    names = {layer.name for layer in layers}
    if not isinstance(factors, EKFACFactors) or set(factors.eigenvalues) != names:
        raise ValueError(
            f"factors must be EKFACFactors from fit_ekfac({loss_fn!r}, ...) with layers "
            f"{sorted(names)}, got {type(factors).__name__}"
            + (f" with {sorted(factors.eigenvalues)}" if isinstance(factors, EKFACFactors) else "")
        )


def _check_curvature(loss_fn, factors, layers, l2, damping) -> float:
    """The checks every EK-FAC solve shares; returns l2 as a float."""
    _check_factors(factors, layers, loss_fn)
    l2 = check_l2(l2)
    if damping is not None:
        check_nonneg("damping", damping)
    return l2


def low_rank_precondition(
    q_a: Float[Array, "d d"],
    q_s: Float[Array, "o o"],
    eigenvalues: Float[Array, "d o"],
    a: Float[Array, "t d"],
    g: Float[Array, "t o"],
    damping,
    rank: int,
) -> tuple[Float[Array, "t d r"], Float[Array, "t o r"]]:
    """``precondition`` of the rank-1 gradients a_t g_t^T, truncated to its top ``rank`` singular pairs.

    In the eigenbasis the preconditioned gradient is (Q_A^T a)(Q_S^T g)^T / (Lambda + lambda):
    rank 1 when Lambda is a Kronecker product (K-FAC), close to it after the eigenvalue
    correction. Its SVD there gives W_t ~= U_t V_t^T with U_t = Q_A u s, V_t = Q_S v
    (kronfluence's query_gradient_low_rank), so a (train, test) pair costs rank x (d + out)
    multiplies instead of d x out, and the d x d rotation back is applied to rank columns.

    Returns:
      (U float32[T, d, rank], V float32[T, out, rank]) with W_t ~= U_t V_t^T.
    """
    rot = jnp.einsum("ti,to->tio", a @ q_a, g @ q_s) / (eigenvalues + damping)
    u, s, vt = jnp.linalg.svd(rot, full_matrices=False)
    u = u[..., :rank] * s[:, None, :rank]
    return jnp.matmul(q_a, u), jnp.matmul(q_s, jnp.swapaxes(vt[:, :rank], 1, 2))


@functools.partial(jax.jit, static_argnames=("loss_fn", "query_rank"))
def _preconditioned_test(loss_fn, factors, lam, params, xt, yt, query_rank=None):
    grads = loss_fn.layer_grads(params, xt, yt)
    out = {}
    for name, gr in grads.items():
        q_a, q_s, ev = factors.q_a[name], factors.q_s[name], factors.eigenvalues[name]
        if isinstance(gr, tuple) and query_rank is not None and query_rank < min(ev.shape):
            out[name] = low_rank_precondition(q_a, q_s, ev, *gr, lam[name], query_rank)
            continue
        if isinstance(gr, tuple):  # dense: materialise a g^T for the T test points
            gr = jnp.einsum("ti,to->tio", *gr)
        out[name] = precondition(q_a, q_s, ev, gr, lam[name])
    return out


@functools.partial(jax.jit, static_argnames=("loss_fn",))
def _score_chunk(loss_fn, params, w_test, chunk):
    grads = loss_fn.layer_grads(params, *chunk)
    total = 0.0
    for name, gr in grads.items():
        w = w_test[name]
        if isinstance(w, tuple):  # low rank: a^T U_t V_t^T g = sum_r (a . u_tr)(g . v_tr)
            total = total + jnp.einsum(
                "ntr,ntr->nt",
                jnp.einsum("ni,tir->ntr", gr[0], w[0]),
                jnp.einsum("no,tor->ntr", gr[1], w[1]),
            )
        elif isinstance(gr, tuple):  # a^T W_t g for each (train, test) pair
            total = total + jnp.einsum("ni,tio,no->nt", gr[0], w, gr[1])
        else:
            total = total + gr.reshape(gr.shape[0], -1) @ w.reshape(w.shape[0], -1).T
    return -total


def ekfac_s_test(
    loss_fn: LayerwiseLoss,
    params: PyTree,
    test_x: Image[AnyArray, " t *input"],
    test_y: Integer[AnyArray, " t"],
    *,
    factors: EKFACFactors,
    l2: float | None = None,
    damping: float | None = None,
) -> PyTree[Float[Array, "t ..."]]:
    """s_test = (GN + lambda I)^-1 grad L(z_test) for T test points, as a params-shaped pytree.

    Args:
      loss_fn: the ``scriptlab.protocols.LayerwiseLoss`` the factors were fitted with.
      params: the model's params.
      test_x: float32[T, ...] in [0, 1] or uint8; test_y: int[T].
      factors: from ``fit_ekfac(loss_fn, params, ...)``.
      l2: the objective's L2 weight (0 for a network trained with decoupled
        weight decay); lambda = l2 + damping. Required, as in ``influence_scores``.
      damping: added to every eigenvalue; None: 0.1 x each layer's mean eigenvalue.

    Returns:
      A pytree like ``params`` with a leading T axis on every leaf (zeros off
      the tracked layers: another head, a normalisation scale); pass it to
      ``perturbation_influence`` for I_pert,loss.
    """
    test_x = check_images(test_x, name="test_x", keep_uint8=True)
    test_x, test_y = check_xy(test_x, test_y, "test")
    layers = check_layerwise(loss_fn, params, test_x)
    l2 = _check_curvature(loss_fn, factors, layers, l2, damping)
    w = _preconditioned_test(
        loss_fn, factors, _damping(factors, l2, damping), params, test_x, test_y
    )
    return matrices_to_params(params, w, layers, (test_y.shape[0],))


def ekfac_scores(
    loss_fn: LayerwiseLoss,
    params: PyTree,
    train_x: Image[AnyArray, " n *input"],
    train_y: Integer[AnyArray, " n"],
    test_x: Image[AnyArray, " t *input"],
    test_y: Integer[AnyArray, " t"],
    *,
    factors: EKFACFactors,
    l2: float | None = None,
    damping: float | None = None,
    batch_size: int = 128,
    query_rank: int | None = None,
) -> Float[Array, "t n"]:
    """I_up,loss of every training point on every test point, over every tracked layer, with EK-FAC.

    The T test gradients are preconditioned once; each chunk of training
    points costs one forward and backward pass plus one contraction per layer
    (a dense layer's per-example gradient stays factored: a^T W_t g).

    Args:
      loss_fn, params, factors, l2, damping: as in ``ekfac_s_test``.
      train_x: float32[N, ...] or uint8; train_y: int[N].
      test_x, test_y: [T] test inputs and labels.
      batch_size: training points per jitted chunk.
      query_rank: None (exact), or keep the top ``query_rank`` singular pairs of each
        preconditioned test gradient of the dense layers (``low_rank_precondition``;
        kronfluence's query rank). The 2049 x 128 dense layer holds 90 % of ScriptNet's
        parameters; at rank r a pair costs r x 2177 multiplies there instead of 262k.
        ``benchmarks/bench_influence.py --wholenet-speed`` prints the speed and the
        agreement with the exact scores by rank.

    Returns:
      float32[T, N]: -grad L(test)^T (GN + lambda I)^-1 grad L(train); < 0 helps
      (the sign of ``influence_scores``).

    References: Koh & Liang 2017, eq. 2; Grosse et al. 2023, eq. 26.
    """
    batch_size = check_batch_size(batch_size)
    train_x, test_x = (
        check_images(train_x, name="train_x", keep_uint8=True),
        check_images(test_x, name="test_x", keep_uint8=True),
    )
    train_x, train_y = check_xy(train_x, train_y, "train")
    test_x, test_y = check_xy(test_x, test_y, "test")
    layers = check_layerwise(loss_fn, params, train_x)
    l2 = _check_curvature(loss_fn, factors, layers, l2, damping)
    if query_rank is not None:
        query_rank = check_int("query_rank", query_rank, 1)
    w = _preconditioned_test(
        loss_fn, factors, _damping(factors, l2, damping), params, test_x, test_y, query_rank
    )
    fn = functools.partial(_score_chunk, loss_fn)
    return map_chunks(fn, (train_x, train_y), batch_size, params, w).T


@functools.partial(jax.jit, static_argnames=("loss_fn",))
def _self_chunk(loss_fn, factors, lam, params, chunk):
    images, targets = chunk
    layers, inputs, logits, backward = loss_fn.forward(params, images)
    grads = backward(logit_residual(logits, targets))
    total = 0.0
    for layer, a, g in zip(layers, inputs, grads, strict=True):
        n = layer.name
        rot = rotated_grads(factors.q_a[n], factors.q_s[n], a, g[:, None])[:, 0]
        total = total + jnp.sum(rot**2 / (factors.eigenvalues[n] + lam[n]), axis=(1, 2))
    return total


def ekfac_self_influence(
    loss_fn: LayerwiseLoss,
    params: PyTree,
    x: Image[AnyArray, " n *input"],
    y: Integer[AnyArray, " n"],
    *,
    factors: EKFACFactors,
    l2: float | None = None,
    damping: float | None = None,
    batch_size: int = 128,
) -> Float[Array, " n"]:
    """grad L(z_i)^T (GN + lambda I)^-1 grad L(z_i) for every training point (mislabel ranking).

    Args: as in ``ekfac_scores``.

    Returns:
      float32[N] >= 0.

    References: Grosse et al. 2023 (self-influence), https://arxiv.org/abs/2308.03296.
    """
    batch_size = check_batch_size(batch_size)
    x = check_images(x, name="x", keep_uint8=True)
    x, y = check_xy(x, y, "train")
    layers = check_layerwise(loss_fn, params, x)
    l2 = _check_curvature(loss_fn, factors, layers, l2, damping)
    fn = functools.partial(_self_chunk, loss_fn)
    return map_chunks(fn, (x, y), batch_size, factors, _damping(factors, l2, damping), params)
