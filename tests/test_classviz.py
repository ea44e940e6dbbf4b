"""Class model visualisation: closed form on a linear model, ascent on a small CNN."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scriptlab.interpret import classviz as C

from helpers import SMALL_SHAPE as SHAPE
from helpers import linear_apply, scriptnet


@pytest.fixture(scope="module")
def small_net():
    _, params, apply_fn = scriptnet(SHAPE)
    return apply_fn, params


@pytest.mark.slow
def test_linear_model_sgd_is_monotone_and_reaches_closed_form():
    # S_c(I) - l2 ||I - 0.5||^2 is concave: plain ascent climbs monotonically to
    # I* = 0.5 + w_c / (2 l2), from the (near-)mean start.
    w = 0.05 * jax.random.normal(jax.random.key(0), (3, *SHAPE))
    l2, lr = 0.5, 0.2
    r = C.class_model(
        linear_apply,
        {"w": w},
        image_shape=SHAPE,
        steps=60,
        lr=lr,
        l2=l2,
        optimizer="sgd",
        clip=False,
    )
    scores = np.asarray(r.scores)
    assert scores.shape == (60, 3)
    assert (np.diff(scores, axis=0) > 0).all()
    np.testing.assert_allclose(r.images, 0.5 + w / (2 * l2), atol=1e-3)


def test_linear_model_adam_without_penalty_is_monotone():
    w = jax.random.normal(jax.random.key(1), (2, *SHAPE))
    r = C.class_model(linear_apply, {"w": w}, image_shape=SHAPE, steps=30, l2=0.0, lr=0.01)
    assert (np.diff(np.asarray(r.scores), axis=0) > 0).all()
    assert float(r.images.min()) >= 0.0 and float(r.images.max()) <= 1.0


@pytest.mark.slow
def test_all_classes_in_one_call_raise_their_scores(small_net):
    apply_fn, params = small_net
    r = C.class_model(apply_fn, params, image_shape=SHAPE, steps=80)
    assert r.images.shape == (4, *SHAPE) and r.scores.shape == (80, 4)
    logits = C.final_scores(apply_fn, params, r)
    start = np.asarray(apply_fn(params, jnp.full((1, *SHAPE), 0.5) + 0.01).script[0])
    # each image raises its own class well above where it started ...
    assert (np.diag(np.asarray(logits)) > start + 0.5).all()
    # ... and its own class wins on it
    np.testing.assert_array_equal(np.asarray(logits).argmax(1), np.arange(4))


@pytest.mark.slow
def test_layer_channel_objective(small_net):
    apply_fn, params = small_net
    r = C.class_model(
        apply_fn, params, objective=("layer", "conv2", 5), image_shape=SHAPE, steps=30
    )
    assert r.images.shape == (1, *SHAPE)
    act = apply_fn(params, r.images).activations["conv2"][0, ..., 5].mean()
    assert float(act) > float(r.scores[0, 0]) + 0.1
    every = C.class_model(
        apply_fn, params, objective=("layer", "dense"), image_shape=SHAPE, steps=2
    )
    assert every.images.shape == (128, *SHAPE)


@pytest.mark.slow
def test_fourier_grayscale_jitter_blur_and_determinism(small_net):
    apply_fn, params = small_net
    g = C.class_model(
        apply_fn,
        params,
        image_shape=SHAPE,
        steps=10,
        grayscale=True,
        jitter=2,
        blur_sigma=0.5,
        tv=0.01,
    )
    np.testing.assert_array_equal(g.images[..., 0], g.images[..., 2])
    f1 = C.class_model(
        apply_fn, params, image_shape=SHAPE, steps=10, parametrisation="fourier", targets=[1, 2]
    )
    f2 = C.class_model(
        apply_fn, params, image_shape=SHAPE, steps=10, parametrisation="fourier", targets=[1, 2]
    )
    np.testing.assert_array_equal(f1.images, f2.images)
    assert f1.images.shape == (2, *SHAPE)
    assert 0.0 < float(f1.images.min()) and float(f1.images.max()) < 1.0
    assert float(f1.scores[-1].mean()) > float(f1.scores[0].mean())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(objective=("layer", "conv9", 0)), "layer 'conv9'"),
        (dict(objective=("layer", "conv2", 99)), r"in \[0, 32\)"),
        (dict(objective=("head", "style")), "head='style'"),
        (dict(objective="script"), "objective must be"),
        (dict(targets=[7]), r"in \[0, 4\)"),
        (dict(parametrisation="fourier", blur_sigma=1.0), "blur_sigma"),
        (dict(steps=0), "steps must be"),
        (dict(image_shape=(8, 16)), "image_shape"),
        (dict(image_shape=(8, 16, 4)), "image_shape"),
        (dict(parametrisation="fft"), "parametrisation must be one of"),
    ],
)
def test_bad_options_raise(small_net, kwargs, match):
    apply_fn, params = small_net
    with pytest.raises(ValueError, match=match):
        C.class_model(apply_fn, params, **{"image_shape": SHAPE, **kwargs})
