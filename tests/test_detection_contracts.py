"""The jaxtyping annotations of the detection study's public functions (stats, TCAV,
detection, ranking) hold on real calls, checked as tests/test_contracts.py checks the others."""

import beartype
import jax
import jax.numpy as jnp
import jaxtyping
import numpy as np
import pytest
from test_detection import mean_colour_reader
from test_tcav import linear_layer_apply, toy_images, toy_params

from scriptlab.interpret import detection as D
from scriptlab.interpret import ranking as R
from scriptlab.interpret import stats as S
from scriptlab.interpret import tcav as T

RNG = np.random.default_rng(0)
MAPS = RNG.uniform(size=(6, 8, 8)).astype(np.float32)
FLIPS = np.array([True, False] * 3)
KEYS = RNG.integers(0, 3, size=(6, 2))

CALLS = {
    "t_test": (S.t_test, lambda: dict(a=jnp.ones((2, 3, 5)), b=jnp.zeros((2, 1, 4)))),
    "adjust_p_values": (S.adjust_p_values, lambda: dict(p_values=jnp.full((2, 3), 0.01))),
    "roc_auc": (S.roc_auc, lambda: dict(scores=MAPS[:, 0, 0], labels=FLIPS.astype(np.int32))),
    "resample_indices": (S.resample_indices, lambda: dict(n=6, n_resamples=4, strata=FLIPS)),
    "bootstrap_mean": (S.bootstrap_mean, lambda: dict(values=FLIPS, n_resamples=4)),
    "bootstrap_difference": (
        S.bootstrap_difference,
        lambda: dict(a=MAPS[:, 0, 0], b=MAPS[:4, 0, 1], paired=False, n_resamples=4),
    ),
    "bootstrap_auc": (
        S.bootstrap_auc,
        lambda: dict(scores=MAPS[:, 0, 0], labels=FLIPS, n_resamples=4),
    ),
    "seed_summary": (S.seed_summary, lambda: dict(values=jnp.ones((3, 2)))),
    "map_distance": (D.map_distance, lambda: dict(a=MAPS, b=MAPS[::-1])),
    "kssd": (D.kssd, lambda: dict(relying_maps=MAPS, reference_maps=MAPS)),
    "map_statistic": (D.map_statistic, lambda: dict(maps=MAPS, masks=MAPS > 0.5)),
    "detection_auc": (
        D.detection_auc,
        lambda: dict(relies=FLIPS, maps=MAPS, statistic="entropy", n_resamples=4),
    ),
    "style_readout": (
        D.style_readout,
        lambda: dict(
            apply_fn=mean_colour_reader, params={"scale": 1.0}, images=jnp.ones((2, 4, 4, 3))
        ),
    ),
    "ranking_shares": (
        R.ranking_shares,
        lambda: dict(
            scores=MAPS[:2, 0], query_keys=KEYS[:2], train_keys=np.r_[KEYS, KEYS[:2]], k=3
        ),
    ),
    "neighbour_shares": (
        R.neighbour_shares,
        lambda: dict(
            queries=MAPS[:2, 0],
            points=MAPS[:, 1],
            query_keys=KEYS[:2, 0],
            point_keys=KEYS[:, 0],
            k=2,
        ),
    ),
    "fit_cavs": (
        T.fit_cavs,
        lambda: dict(
            activations=MAPS[:, 0],
            positives=np.array([[0, 1]] * 2),
            negatives=np.array([[2, 3], [4, 5]]),
        ),
    ),
    "fit_cav": (T.fit_cav, lambda: dict(concept=MAPS[:3, 0], random=MAPS[3:, 0], method="mean")),
    "layer_gradients": (
        T.layer_gradients,
        lambda: dict(
            apply_fn=linear_layer_apply,
            params=toy_params(),
            images=toy_images(jax.random.key(0), 2),
            targets=0,
            layer="h",
        ),
    ),
    "tcav_scores": (T.tcav_scores, lambda: dict(gradients=MAPS[:, 0], directions=MAPS[:2, 1])),
    "tcav": (
        T.tcav,
        lambda: dict(
            apply_fn=linear_layer_apply,
            params=toy_params(),
            images=toy_images(jax.random.key(0), 3),
            targets=0,
            concepts={"c": toy_images(jax.random.key(1), 3)},
            random_images=toy_images(jax.random.key(2), 9),
            layers="h",
            n_random=2,
        ),
    ),  # fmt: skip
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_call_matches_its_jaxtyping_shapes(name):
    fn, kwargs = CALLS[name]
    jaxtyping.jaxtyped(typechecker=beartype.beartype)(fn)(**kwargs())
