"""The apply_fn contract: functional() views hash by value, so jit compiles once per architecture."""

import functools

import jax
import numpy as np

from scriptlab.interpret import saliency as S
from scriptlab.model import Functional, build, functional
from scriptlab.protocols import ModelOutputs

SMALL = dict(channels=(4, 8, 8), hidden=16)


def _two_models(**kwargs):
    (pa, fa), (pb, fb) = (functional(build(4, 3, seed=s, **SMALL, **kwargs)) for s in (0, 1))
    return pa, fa, pb, fb


def test_same_architecture_apply_fns_are_equal_and_hash_alike():
    _, fa, _, fb = _two_models()
    assert isinstance(fa, Functional)
    assert fa == fb and hash(fa) == hash(fb)
    assert fa is not fb


def test_different_architectures_are_not_equal():
    _, fa = functional(build(4, 3, **SMALL))
    _, wider = functional(build(4, 3, channels=(4, 8, 16), hidden=16))
    _, more_classes = functional(build(5, 3, **SMALL))
    _, conditional = functional(build(4, 3, conditional=True, **SMALL))
    for other in (wider, more_classes, conditional):
        assert fa != other


def test_outputs_satisfy_the_protocol():
    pa, fa, _, _ = _two_models()
    out = fa(pa, np.zeros((2, 32, 64, 3), np.float32))
    assert isinstance(out, ModelOutputs)
    assert out.script.shape == (2, 4) and out.font.shape == (2, 3)


def test_num_traces_across_two_models_of_one_architecture():
    pa, fa, pb, fb = _two_models()
    traces = []

    @functools.partial(jax.jit, static_argnames="apply_fn")
    def logits(apply_fn, params, x):
        traces.append(1)
        return apply_fn(params, x).script

    x = jax.random.uniform(jax.random.key(0), (2, 32, 64, 3))
    la, lb = logits(fa, pa, x), logits(fb, pb, x)
    assert len(traces) == 1
    assert not np.allclose(la, lb)  # one program, two different parameter sets


def test_a_library_method_compiles_once_for_two_models():
    pa, fa, pb, fb = _two_models()
    x = jax.random.uniform(jax.random.key(0), (3, 32, 64, 3))  # a batch size no other test uses
    before = S._gradient_map._cache_size()
    ga = S.vanilla_gradient(fa, pa, x, 1)
    gb = S.vanilla_gradient(fb, pb, x, 1)
    assert S._gradient_map._cache_size() == before + 1
    assert not np.allclose(ga, gb)
