"""The input contract of the public API, as one table: (function, argument, bad value, message).

Every public transform validates before it traces (issue 13): non-finite
images and hyperparameters, out-of-range labels / indices / layers / units,
floats where integers are meant and shape mismatches each raise the library's
own ValueError naming the argument. Each function's default call is run too,
so a failure below is caused by the bad value, not by the call.
"""

import json
from types import SimpleNamespace

import beartype
import jax
import jax.numpy as jnp
import jaxtyping
import numpy as np
import pytest

from scriptlab import erasure, probe, train
from scriptlab.data import as_float
from scriptlab.interpret import activations as A
from scriptlab.interpret import classviz as C
from scriptlab.interpret import embedding as E
from scriptlab.interpret import filters as F
from scriptlab.interpret import localisation as L
from scriptlab.interpret import occlusion as O
from scriptlab.interpret import receptive as R
from scriptlab.interpret import saliency as S
from scriptlab.interpret import sanity as SA
from scriptlab.interpret._common import uint8_to_float
from scriptlab.interpret.influence import attack as IA
from scriptlab.interpret.influence import ekfac as IE
from scriptlab.interpret.influence import fit as IF
from scriptlab.interpret.influence import layers as ILA
from scriptlab.interpret.influence import loo as ILO
from scriptlab.interpret.influence import losses as IL
from scriptlab.interpret.influence import mislabel as IM
from scriptlab.interpret.influence import perturb as IP
from scriptlab.interpret.influence import retrain as IR
from scriptlab.interpret.influence import scores as IS
from scriptlab.interpret.influence import solvers as IV
from scriptlab.interpret.influence import top_view as ITL
from scriptlab.interpret.influence import tracin as IT
from scriptlab.interpret.influence import validation as IVA
from scriptlab.model import build, functional
from scriptlab.protocols import AnyArray, Image

NAN, INF = float("nan"), float("inf")


@pytest.fixture(scope="module")
def c():
    """A tiny random-init ScriptNet (5 scripts, 3 styles, 16x16 images) and a few inputs."""
    model = build(5, 3, seed=0, image_shape=(16, 16, 3))
    params, fn = functional(model)
    x = jax.random.uniform(jax.random.key(0), (2, 16, 16, 3))
    feats = np.asarray(jax.random.normal(jax.random.key(1), (12, 3)))
    labels = np.arange(12) % 2
    lp = {"w": jnp.zeros((3, 2)), "b": jnp.zeros(2)}
    rf = R.receptive_fields(model.geometry(), (16, 16))["conv1"]
    aff = E.affinities(feats, perplexity=2.0)
    return SimpleNamespace(
        aff=aff,
        model=model, params=params, fn=fn, x=x, t=np.array([0, 1]), feats=feats,
        labels=labels, lp=lp, rf=rf, maps=jnp.zeros((2, 8, 8)),
    )  # fmt: skip


def _img(c):
    return dict(apply_fn=c.fn, params=c.params, images=c.x)


def _sal(c):
    return dict(_img(c), targets=c.t)


def _xy(c):
    return dict(loss_fn=IL.logistic_loss, params=c.lp, l2=0.1)


def _tracin(c):
    return dict(
        loss_fn=ILA.layerwise_loss(c.fn, "script"), checkpoints=[c.params], learning_rates=[0.1]
    )


def _ekfac(c):
    """EK-FAC factors of the fixture's model on its two images, fitted once per module."""
    loss = ILA.layerwise_loss(c.fn, "script")
    if not hasattr(c, "factors"):
        c.factors = IE.fit_ekfac(loss, c.params, c.x)
    return dict(loss_fn=loss, params=c.params, factors=c.factors, l2=0.0)


def _attack(c):
    """The convex head on the fixture's trunk features, fitted once per module."""
    if not hasattr(c, "head"):
        u8 = np.asarray(jax.random.uniform(jax.random.key(2), (8, 16, 16, 3)) * 255, np.uint8)
        y = np.arange(8) % 2
        f = E.embed(c.fn, c.params, u8)
        head, _ = IF.fit_logistic(f, y, n_classes=2, l2=0.1, steps=2)
        h = IV.training_hessian(IL.logistic_loss, head, f, y, l2=0.1)
        c.head = dict(head_params=head, train_images=u8, train_y=y, features=f, hessian=h)
    return dict(
        c.head, apply_fn=c.fn, trunk_params=c.params, target_image=c.x[:1], target_y=[0],
        k=1, epsilon=2 / 255, l2=0.1, max_refit_steps=1,
    )  # fmt: skip


# function -> (callable, default keyword arguments of the fixture)
CALLS = {
    "vanilla_gradient": (S.vanilla_gradient, _sal),
    "smoothgrad": (S.smoothgrad, lambda c: dict(_sal(c), n_samples=2)),
    "integrated_gradients": (S.integrated_gradients, lambda c: dict(_sal(c), steps=2)),
    "grad_cam": (S.grad_cam, _sal),
    "completeness_gap": (
        S.completeness_gap,
        lambda c: dict(_sal(c), attributions=jnp.zeros((2, 16, 16))),
    ),
    "occlusion": (O.occlusion, lambda c: dict(_sal(c), patch=8, stride=8)),
    "occlusion_layer": (
        O.occlusion,
        lambda c: dict(_img(c), targets=0, patch=8, stride=8, layer="conv1", unit=(0, 0)),
    ),
    "activation_maps": (A.activation_maps, _img),
    "dead_filters": (A.dead_filters, _img),
    "feature_grid": (A.feature_grid, lambda c: dict(maps=jnp.ones((4, 4, 3)))),
    "top_activating": (R.top_activating, lambda c: dict(_img(c), layer="conv1", k=1)),
    "receptive_crops": (
        R.receptive_crops,
        lambda c: dict(images=c.x, rf=c.rf, index=[0], row=[0], col=[0]),
    ),
    "receptive_box": (R.receptive_box, lambda c: dict(rf=c.rf, row=0, col=0)),
    "empirical_receptive_field": (
        R.empirical_receptive_field,
        lambda c: dict(
            feature_fn=R.trunk_fn(c.model), image_shape=(16, 16, 3), layer="conv1", rows=0, cols=0
        ),
    ),
    "label_purity": (
        R.label_purity,
        lambda c: dict(labels=np.array([0, 1]), index=np.array([[0, 1]]), n_classes=2),
    ),
    "unit_shares": (
        R.unit_shares,
        lambda c: dict(
            peaks=np.ones((2, 1)),
            top=R.TopPatches(
                np.array([[0, 1]]), np.ones((1, 2)), np.zeros((1, 2)), np.zeros((1, 2))
            ),
            query_keys=np.array([0, 1]),
            point_keys=np.array([0, 1]),
        ),
    ),
    "embed": (E.embed, _img),
    "class_model": (
        C.class_model,
        lambda c: dict(apply_fn=c.fn, params=c.params, image_shape=(16, 16, 3), steps=2),
    ),
    "filter_noisiness": (F.filter_noisiness, lambda c: dict(kernel=jnp.ones((3, 3, 3, 4)))),
    "localisation_scores": (
        L.localisation_scores,
        lambda c: dict(maps=c.maps, masks=jnp.ones((2, 8, 8), bool)),
    ),
    "spearman": (SA.spearman, lambda c: dict(a=c.maps, b=c.maps)),
    "ssim": (SA.ssim, lambda c: dict(a=c.maps, b=c.maps)),
    "predict": (train.predict, _img),
    "fit_probe": (
        probe.fit_probe,
        lambda c: dict(features=c.feats, labels=c.labels, n_classes=2, steps=2),
    ),
    "probe_accuracy": (
        probe.probe_accuracy,
        lambda c: dict(
            train_x=c.feats, train_y=c.labels, test_x=c.feats, test_y=c.labels, n_classes=2
        ),
    ),
    "conditional_probe_accuracy": (
        probe.conditional_probe_accuracy,
        lambda c: dict(
            train_x=c.feats,
            train_y=c.labels,
            train_c=c.labels,
            test_x=c.feats,
            test_y=c.labels,
            test_c=c.labels,
            n_classes=2,
            n_conditions=2,
            steps=2,
        ),
    ),  # fmt: skip
    "fit_logistic": (
        IF.fit_logistic,
        lambda c: dict(features=c.feats, labels=c.labels, n_classes=2, steps=1),
    ),
    "influence_scores": (
        IS.influence_scores,
        lambda c: dict(
            _xy(c), train_x=c.feats, train_y=c.labels, test_x=c.feats[:2], test_y=c.labels[:2]
        ),
    ),
    "self_influence": (IM.self_influence, lambda c: dict(_xy(c), x=c.feats, y=c.labels)),
    "inverse_hvp": (
        IV.inverse_hvp,
        lambda c: dict(
            f=lambda p: IL.objective(IL.logistic_loss, p, c.feats, c.labels, l2=0.1),
            params=c.lp,
            v=c.lp,
            max_iter=2,
        ),
    ),
    "sparsity_curve": (
        A.sparsity_curve,
        lambda c: dict(apply_fn=c.fn, snapshots=[(0, c.params)], images=c.x),
    ),
    "filter_grid": (F.filter_grid, lambda c: dict(kernel=jnp.ones((3, 3, 3, 4)))),
    "dilate": (L.dilate, lambda c: dict(masks=jnp.ones((2, 8, 8), bool), radius=1)),
    "verdicts": (
        SA.verdicts,
        lambda c: dict(
            cascade_rows=[{"method": "gradient", "stage": "dense", "spearman_abs": 0.1}]
        ),
    ),
    "normalise": (SA.normalise, lambda c: dict(maps=c.maps)),
    "tsne": (E.tsne, lambda c: dict(x=c.feats, perplexity=2.0, n_iter=10, exaggeration_iter=5)),
    "kl_divergence_and_gradient": (
        E.kl_divergence_and_gradient,
        lambda c: dict(aff=c.aff, y=np.zeros((12, 2))),
    ),
    "knn_accuracy": (E.knn_accuracy, lambda c: dict(x=c.feats, labels=c.labels, k=2)),
    "purity_chance": (
        R.purity_chance,
        lambda c: dict(labels=np.array([0, 1, 0, 1]), k=2, n_classes=2, draws=10),
    ),
    "receptive_fields": (
        R.receptive_fields,
        lambda c: dict(geometry=c.model.geometry(), image_hw=(16, 16)),
    ),
    "support_box": (R.support_box, lambda c: dict(mask=np.ones((3, 3), bool))),
    "final_scores": (
        C.final_scores,
        lambda c: dict(
            apply_fn=c.fn,
            params=c.params,
            result=C.ClassModel(jnp.full((1, 16, 16, 3), 0.5), jnp.zeros((2, 1))),
        ),
    ),
    "hvp": (
        IV.hvp,
        lambda c: dict(
            f=lambda p: IL.objective(IL.logistic_loss, p, c.feats, c.labels, l2=0.1),
            params=c.lp,
            v=c.lp,
        ),
    ),
    "per_example_grads": (
        IS.per_example_grads,
        lambda c: dict(loss_fn=IL.logistic_loss, params=c.lp, x=c.feats, y=c.labels),
    ),
    "predicted_loo_change": (
        IS.predicted_loo_change,
        lambda c: dict(scores=jnp.ones((2, 12)), n_train=12),
    ),
    "detection_curve": (
        IM.detection_curve,
        lambda c: dict(ranking=np.arange(12), flipped=c.labels.astype(bool), fractions=[0.5]),
    ),
    "flip_labels": (IM.flip_labels, lambda c: dict(labels=c.labels, n_classes=2, fraction=0.5)),
    "training_hessian": (
        IV.training_hessian,
        lambda c: dict(loss_fn=IL.logistic_loss, params=c.lp, x=c.feats, y=c.labels, l2=0.1),
    ),
    "damped_hessian": (IV.damped_hessian, lambda c: dict(h=jnp.eye(3), damping=0.1)),
    "largest_eigenvalue": (
        IV.largest_eigenvalue,
        lambda c: dict(matvec=lambda v: v, n=3, dtype=jnp.float32),
    ),
    "pearson": (ILO.pearson, lambda c: dict(a=[1.0, 2.0, 3.0], b=[1.0, 2.0, 4.0])),
    "loo_retrain": (
        ILO.loo_retrain,
        lambda c: dict(
            _xy(c),
            train_x=c.feats,
            train_y=c.labels,
            test_x=c.feats[:2],
            test_y=c.labels[:2],
            removed=np.array([0]),
            steps=2,
        ),
    ),  # fmt: skip
    "refine": (
        IF.refine,
        lambda c: dict(
            loss_fn=IL.logistic_loss, params=c.lp, x=c.feats, y=c.labels, l2=0.1, steps=2
        ),
    ),
    "Probe.logits": (
        lambda fitted, features: fitted.logits(features),
        lambda c: dict(fitted=probe.fit_probe(c.feats, c.labels, 2, steps=2), features=c.feats),
    ),
    "MLPProbe.predict": (
        lambda fitted, features: fitted.predict(features),
        lambda c: dict(fitted=probe.fit_mlp_probe(c.feats, c.labels, 2, steps=2), features=c.feats),
    ),
    "localisation_table": (
        L.localisation_table,
        lambda c: dict(
            _sal(c),
            masks=jnp.ones((2, 16, 16), bool),
            methods=("gradient",),
            options={"smoothgrad": {"n_samples": 2}},
        ),
    ),  # fmt: skip
    "cascading_check": (
        SA.cascading_check,
        lambda c: dict(_sal(c), random_params=c.params, methods=("gradient",)),
    ),
    "objective": (
        IL.objective,
        lambda c: dict(
            loss_fn=IL.logistic_loss,
            params=c.lp,
            x=c.feats,
            y=c.labels,
            l2=0.1,
            weights=jnp.ones(12),
        ),
    ),  # fmt: skip
    "cross_entropy": (
        lambda head, c: IL.cross_entropy(c.fn, head)(c.params, c.x, c.t),
        lambda c: dict(head="script", c=c),
    ),
    "pca": (E.pca, lambda c: dict(x=c.feats)),
    "affinities": (E.affinities, lambda c: dict(x=c.feats, perplexity=2.0)),
    "trustworthiness": (E.trustworthiness, lambda c: dict(x=c.feats, y=c.feats[:, :2])),
    "fit_leace": (
        erasure.fit_leace,
        lambda c: dict(features=c.feats, concept=c.labels, n_classes=2),
    ),
    "layerwise_loss": (ILA.layerwise_loss, lambda c: dict(apply_fn=c.fn, head="script")),
    "tracin_scores": (
        IT.tracin_scores,
        lambda c: dict(_tracin(c), train_x=c.x, train_y=c.t, test_x=c.x, test_y=c.t),
    ),
    "tracin_self_influence": (IT.tracin_self_influence, lambda c: dict(_tracin(c), x=c.x, y=c.t)),
    "epoch_learning_rates": (
        train.epoch_learning_rates,
        lambda c: dict(config=train.TrainConfig(), n_train=1000, epochs=[0, 1]),
    ),
    "top_layers": (
        ITL.top_layers,
        lambda c: dict(apply_fn=c.fn, params=c.params, images=c.x, first="dense"),
    ),
    "loo_indices": (IVA.loo_indices, lambda c: dict(scores=np.arange(6.0), k_top=2, k_rand=2)),
    "fit_ekfac": (
        IE.fit_ekfac,
        lambda c: dict(loss_fn=ILA.layerwise_loss(c.fn, "script"), params=c.params, x=c.x),
    ),
    "ekfac_scores": (
        IE.ekfac_scores,
        lambda c: dict(_ekfac(c), train_x=c.x, train_y=c.t, test_x=c.x[:1], test_y=c.t[:1]),
    ),
    "ekfac_s_test": (IE.ekfac_s_test, lambda c: dict(_ekfac(c), test_x=c.x, test_y=c.t)),
    "ekfac_self_influence": (IE.ekfac_self_influence, lambda c: dict(_ekfac(c), x=c.x, y=c.t)),
    "perturbation_influence": (
        IP.perturbation_influence,
        lambda c: dict(
            loss_fn=IL.logistic_loss, params=c.lp, s_test=c.lp, train_x=c.feats, train_y=c.labels
        ),
    ),
    "training_set_attack": (IA.training_set_attack, _attack),
    "leave_out_retrain": (
        IR.leave_out_retrain,
        lambda c: dict(
            _xy(c),
            train_x=c.feats,
            train_y=c.labels,
            test_x=c.feats[:2],
            test_y=c.labels[:2],
            removed=np.array([[0]]),
            epochs=1,
            batch_size=4,
        ),
    ),  # fmt: skip
    "pbrf": (
        IR.pbrf,
        lambda c: dict(
            apply_fn=c.fn,
            params=c.params,
            train_x=c.x,
            train_y=c.t,
            test_x=c.x[:1],
            test_y=c.t[:1],
            removed=np.array([[0]]),
            damping=0.1,
            epochs=1,
            batch_size=2,
        ),
    ),  # fmt: skip
    "predicted_loo_change_newton": (
        ILO.predicted_loo_change_newton,
        lambda c: dict(
            _xy(c),
            train_x=c.feats,
            train_y=c.labels,
            test_x=c.feats[:2],
            test_y=c.labels[:2],
            removed=np.array([0]),
        ),
    ),  # fmt: skip
    "slope": (ILO.slope, lambda c: dict(predicted=[1.0, 2.0], actual=[1.0, 2.5])),
    "erase": (
        erasure.erase,
        lambda c: dict(eraser=erasure.fit_leace(c.feats, c.labels, 2), features=c.feats),
    ),
}

NAN_IMAGE = lambda c: c.x.at[0, 1, 2, 0].set(NAN)  # noqa: E731
BAD = [
    # images: non-finite, out of the [0, 1] convention, unscaled dtypes, wrong rank / size
    *[(f, "images", NAN_IMAGE, "NaN") for f in
      ("vanilla_gradient", "smoothgrad", "integrated_gradients", "grad_cam", "occlusion",
       "activation_maps", "dead_filters", "top_activating", "receptive_crops", "embed", "predict")],
    *[(f, "images", lambda c: c.x * 255, r"\[0, 1\]") for f in
      ("vanilla_gradient", "occlusion", "activation_maps", "embed", "predict")],
    *[(f, "images", lambda c: (c.x * 255).astype(jnp.int32), "dtype int32") for f in
      ("vanilla_gradient", "occlusion", "dead_filters", "embed", "predict")],
    ("vanilla_gradient", "images", lambda c: c.x > 0.5, "dtype bool"),
    ("predict", "images", lambda c: c.x[0], "rank 4"),
    ("predict", "images", lambda c: jnp.zeros((2, 8, 8, 3)), "could not run"),
    ("embed", "images", lambda c: jnp.zeros((2, 16, 16, 1)), "could not run"),
    # targets, labels, indices: out of range, negative, float, bool, wrong length
    ("vanilla_gradient", "targets", lambda c: np.array([0, 5]), r"\[0, 5\)"),
    ("vanilla_gradient", "targets", lambda c: np.array([-1, 0]), r"\[0, 5\)"),
    ("vanilla_gradient", "targets", lambda c: np.array([0.0, 1.5]), "integer"),
    ("vanilla_gradient", "targets", lambda c: True, "integer"),
    ("occlusion", "targets", lambda c: np.array([0, 1, 2]), "int\\[2\\]"),
    ("occlusion_layer", "targets", lambda c: 16, "targets"),
    ("occlusion_layer", "unit", lambda c: (-1, 0), "unit"),
    ("occlusion_layer", "unit", lambda c: (8, 0), "unit"),
    ("occlusion_layer", "unit", lambda c: (1.5, 0), "unit"),
    ("occlusion_layer", "layer", lambda c: "nope", "nope"),
    ("receptive_crops", "index", lambda c: [-1], "index"),
    ("receptive_crops", "index", lambda c: [2], "index"),
    ("receptive_crops", "index", lambda c: [0.7], "index"),
    ("receptive_crops", "row", lambda c: [8], "row"),
    ("receptive_box", "row", lambda c: -1, "row"),
    ("receptive_box", "col", lambda c: 8, "col"),
    ("empirical_receptive_field", "layer", lambda c: "nope", "nope"),
    ("empirical_receptive_field", "rows", lambda c: 8, "rows"),
    ("empirical_receptive_field", "cols", lambda c: -1, "cols"),
    ("empirical_receptive_field", "channel", lambda c: 16, "channel"),
    ("label_purity", "index", lambda c: np.array([[0, -1]]), "index"),
    ("label_purity", "labels", lambda c: np.array([0, 2]), "labels"),
    ("unit_shares", "peaks", lambda c: np.ones((2, 3)), "peaks"),
    ("unit_shares", "query_keys", lambda c: np.array([0.5, 1.0]), "query_keys"),
    ("unit_shares", "units", lambda c: 2, "units"),
    ("class_model", "targets", lambda c: [-1], "targets"),
    ("class_model", "objective", lambda c: ("layer", "conv1", 16), "targets"),
    ("class_model", "objective", lambda c: ("layer", "nope"), "nope"),
    ("fit_probe", "labels", lambda c: c.labels + 0.5, "labels"),
    ("fit_probe", "labels", lambda c: c.labels - 1, "labels"),
    ("probe_accuracy", "test_y", lambda c: c.labels * 3, "labels of test_x"),
    ("conditional_probe_accuracy", "train_c", lambda c: c.labels * 2, "train_c"),
    ("conditional_probe_accuracy", "test_c", lambda c: c.labels + 0.5, "test_c"),
    ("fit_logistic", "labels", lambda c: c.labels * 2, "labels"),
    ("self_influence", "y", lambda c: c.labels - 1, "targets"),
    # layer and head names
    ("grad_cam", "layer", lambda c: "nope", "nope"),
    ("grad_cam", "head", lambda c: "nope", "head"),
    ("activation_maps", "layers", lambda c: ("nope",), "nope"),
    ("top_activating", "layer", lambda c: "dense", "dense"),
    ("embed", "layer", lambda c: "nope", "nope"),
    # hyperparameters: non-finite, out of range, non-integral
    ("smoothgrad", "noise", lambda c: NAN, "noise"),
    ("smoothgrad", "noise", lambda c: INF, "noise"),
    ("smoothgrad", "noise", lambda c: -0.1, "noise"),
    ("smoothgrad", "n_samples", lambda c: 1.5, "n_samples"),
    ("smoothgrad", "samples_per_call", lambda c: 0, "samples_per_call"),
    ("integrated_gradients", "steps", lambda c: 2.5, "steps"),
    ("integrated_gradients", "baseline", lambda c: jnp.full((16, 16, 3), NAN), "baseline"),
    ("integrated_gradients", "baseline", lambda c: jnp.zeros((8, 8, 3)), "baseline"),
    ("completeness_gap", "attributions", lambda c: jnp.zeros((3, 16, 16)), "attributions"),
    ("completeness_gap", "attributions", lambda c: jnp.full((2, 16, 16), NAN), "attributions"),
    ("occlusion", "patch", lambda c: 1.5, "patch"),
    ("occlusion", "patch", lambda c: True, "patch"),
    ("occlusion", "patch", lambda c: 17, "patch"),
    ("occlusion", "stride", lambda c: 0, "stride"),
    ("occlusion", "sigma", lambda c: NAN, "sigma"),
    ("occlusion", "batch_size", lambda c: 0, "batch_size"),
    ("dead_filters", "threshold", lambda c: NAN, "threshold"),
    ("feature_grid", "maps", lambda c: jnp.full((4, 4, 3), NAN), "maps"),
    ("top_activating", "k", lambda c: 3, "k"),
    ("top_activating", "k", lambda c: 1.5, "k"),
    ("receptive_crops", "fill", lambda c: NAN, "fill"),
    ("embed", "batch_size", lambda c: 0, "batch_size"),
    ("class_model", "lr", lambda c: NAN, "lr"),
    ("class_model", "l2", lambda c: INF, "l2"),
    ("class_model", "tv", lambda c: -1.0, "tv"),
    ("class_model", "blur_sigma", lambda c: NAN, "blur_sigma"),
    ("class_model", "steps", lambda c: 1.5, "steps"),
    ("filter_noisiness", "kernel", lambda c: jnp.full((3, 3, 3, 4), NAN), "kernel"),
    ("localisation_scores", "maps", lambda c: jnp.full((2, 8, 8), NAN), "maps"),
    ("spearman", "b", lambda c: jnp.zeros((3, 8, 8)), "b must have shape"),
    ("spearman", "a", lambda c: c.maps.at[0, 0, 0].set(NAN), "NaN"),
    ("ssim", "window", lambda c: 0, "window"),
    ("ssim", "window", lambda c: 9, "window"),
    ("predict", "batch_size", lambda c: 0, "batch_size"),
    ("fit_probe", "features", lambda c: np.full((12, 3), NAN), "features"),
    ("fit_probe", "l2", lambda c: NAN, "l2"),
    ("fit_probe", "steps", lambda c: 0, "steps"),
    ("fit_probe", "n_classes", lambda c: 0, "n_classes"),
    ("probe_accuracy", "test_x", lambda c: np.zeros((12, 5)), "test_x"),
    ("fit_logistic", "l2", lambda c: INF, "l2"),
    ("influence_scores", "damping", lambda c: NAN, "damping"),
    ("influence_scores", "l2", lambda c: -1.0, "l2"),
    ("influence_scores", "tol", lambda c: NAN, "tol"),
    ("influence_scores", "max_iter", lambda c: 2.5, "max_iter"),
    ("influence_scores", "test_y", lambda c: np.array([0]), "targets"),
    ("self_influence", "damping", lambda c: INF, "damping"),
    ("self_influence", "batch_size", lambda c: 0.5, "batch_size"),
    ("inverse_hvp", "damping", lambda c: NAN, "damping"),
    ("inverse_hvp", "max_iter", lambda c: 1.5, "max_iter"),
    ("inverse_hvp", "v", lambda c: jax.tree.map(lambda a: a + NAN, c.lp), "NaN"),
    # the rest of the public API
    ("sparsity_curve", "snapshots", lambda c: [(0.5, c.params)], "epoch"),
    ("feature_grid", "columns", lambda c: 0, "columns"),
    ("feature_grid", "pad", lambda c: -1, "pad"),
    ("filter_grid", "max_in", lambda c: 0, "max_in"),
    ("filter_grid", "pad", lambda c: -1, "pad"),
    ("dilate", "radius", lambda c: -1, "radius"),
    ("dilate", "radius", lambda c: 1.5, "radius"),
    ("verdicts", "threshold", lambda c: NAN, "threshold"),
    ("verdicts", "metric", lambda c: "nope", "metric"),
    ("verdicts", "stage", lambda c: "conv9", "stage"),
    ("normalise", "maps", lambda c: c.maps.at[0, 0, 0].set(INF), "maps"),
    ("tsne", "momentum", lambda c: (NAN, 0.8), "momentum"),
    ("tsne", "momentum", lambda c: (0.5,), "momentum"),
    ("tsne", "early_exaggeration", lambda c: NAN, "early_exaggeration"),
    ("tsne", "init", lambda c: np.full((12, 2), NAN), "init"),
    ("tsne", "n_iter", lambda c: 10.5, "n_iter"),
    ("kl_divergence_and_gradient", "y", lambda c: np.full((12, 2), NAN), "y"),
    ("kl_divergence_and_gradient", "exaggeration", lambda c: NAN, "exaggeration"),
    ("knn_accuracy", "k", lambda c: 1.5, "k"),
    ("purity_chance", "k", lambda c: 0, "k"),
    ("purity_chance", "k", lambda c: 5, "k"),
    ("purity_chance", "draws", lambda c: 0, "draws"),
    ("receptive_fields", "image_hw", lambda c: (16.5, 16), "image_hw"),
    ("support_box", "mask", lambda c: np.ones((2, 3, 3), bool), "mask"),
    ("final_scores", "result", lambda c: C.ClassModel(jnp.full((1, 16, 16, 3), NAN), jnp.zeros((2, 1))), "NaN"),
    ("hvp", "v", lambda c: jax.tree.map(lambda a: a + NAN, c.lp), "NaN"),
    ("hvp", "v", lambda c: {"w": c.lp["w"]}, "tree structure"),
    ("per_example_grads", "batch_size", lambda c: 0, "batch_size"),
    ("per_example_grads", "y", lambda c: c.labels - 1, "targets"),
    ("predicted_loo_change", "n_train", lambda c: 0, "n_train"),
    ("predicted_loo_change", "scores", lambda c: jnp.full((2, 12), NAN), "scores"),
    ("detection_curve", "fractions", lambda c: [2.0], "fractions"),
    ("detection_curve", "ranking", lambda c: np.arange(12) + 1, "ranking"),
    ("flip_labels", "fraction", lambda c: 1.5, "fraction"),
    ("flip_labels", "fraction", lambda c: NAN, "fraction"),
    ("flip_labels", "n_classes", lambda c: 1, "n_classes"),
    ("flip_labels", "labels", lambda c: c.labels - 1, "labels"),
    ("training_hessian", "l2", lambda c: NAN, "l2"),
    ("damped_hessian", "damping", lambda c: NAN, "damping"),
    ("largest_eigenvalue", "iters", lambda c: 0, "iters"),
    ("pearson", "a", lambda c: [1.0, NAN, 3.0], "NaN"),
    ("pearson", "b", lambda c: [1.0, 2.0], "as many values"),
    ("loo_retrain", "lr", lambda c: NAN, "lr"),
    ("leave_out_retrain", "removed", lambda c: np.array([0]), r"removed must be int\[M, k\]"),
    ("leave_out_retrain", "removed", lambda c: np.array([[12]]), r"removed must lie in \[0, 12\)"),
    ("leave_out_retrain", "epochs", lambda c: 0, "epochs"),
    ("leave_out_retrain", "batch_size", lambda c: 13, "batch_size"),
    ("leave_out_retrain", "lr", lambda c: NAN, "lr"),
    ("pbrf", "damping", lambda c: -1.0, "damping"),
    ("pbrf", "weight", lambda c: NAN, "weight"),
    ("pbrf", "removed", lambda c: np.array([[2]]), "removed"),
    ("pbrf", "head", lambda c: "_private", "head"),
    ("loo_retrain", "momentum", lambda c: 1.0, "momentum"),
    ("loo_retrain", "removed", lambda c: np.array([0.5]), "removed"),
    ("loo_retrain", "removed", lambda c: np.array([12]), "removed"),
    ("refine", "momentum", lambda c: 1.0, "momentum"),
    ("refine", "steps", lambda c: 0, "steps"),
    ("erase", "features", lambda c: np.full((3, 3), NAN), "NaN"),
    ("localisation_table", "options", lambda c: {"smoothgrads": {"n_samples": 2}}, "smoothgrads"),
    ("cascading_check", "options", lambda c: {"gradient": 3}, "options"),
    ("objective", "weights", lambda c: jnp.full(12, NAN), "weights"),
    ("objective", "weights", lambda c: jnp.ones(3), "weights"),
    ("cross_entropy", "head", lambda c: "nope", "head"),
    ("pca", "n_components", lambda c: 1.5, "n_components"),
    ("affinities", "block_size", lambda c: 0, "block_size"),
    ("trustworthiness", "n_neighbors", lambda c: 1.5, "n_neighbors"),
    ("fit_leace", "tol", lambda c: NAN, "tol"),
    ("fit_leace", "concept", lambda c: c.labels - 1, "concept"),
    # whole-network influence, I_pert,loss and the attack (issue 17)
    ("layerwise_loss", "head", lambda c: 3, "head"),
    ("tracin_scores", "checkpoints", lambda c: [], "checkpoints"),
    ("tracin_scores", "learning_rates", lambda c: [0.1, 0.2], "learning_rates"),
    ("tracin_scores", "learning_rates", lambda c: [-0.1], "learning_rates"),
    ("tracin_scores", "test_y", lambda c: np.array([0]), "test"),
    ("tracin_scores", "batch_size", lambda c: 0, "batch_size"),
    ("tracin_self_influence", "learning_rates", lambda c: [NAN], "learning_rates"),
    ("epoch_learning_rates", "epochs", lambda c: [99], "epochs"),
    ("epoch_learning_rates", "n_train", lambda c: 0, "n_train"),
    ("top_layers", "first", lambda c: "conv9", "first"),
    ("top_layers", "images", lambda c: np.zeros((1, 8, 8, 3)), "shape|could not"),
    ("loo_indices", "k_rand", lambda c: 5, "k_rand"),
    ("loo_indices", "k_top", lambda c: True, "k_top"),
    ("fit_ekfac", "x", NAN_IMAGE, "NaN"),
    ("fit_ekfac", "labels", lambda c: "nope", "labels"),
    ("fit_ekfac", "loss_fn", lambda c: ILA.layerwise_loss(c.fn, "nope"), "head"),
    ("fit_ekfac", "loss_fn", lambda c: IL.cross_entropy(c.fn, "script"), "LayerwiseLoss"),
    ("fit_ekfac", "batch_size", lambda c: 0, "batch_size"),
    ("ekfac_scores", "damping", lambda c: NAN, "damping"),
    ("ekfac_scores", "l2", lambda c: -1.0, "l2"),
    ("ekfac_scores", "query_rank", lambda c: 1.5, "query_rank"),
    ("ekfac_scores", "train_x", lambda c: c.x * 255, r"\[0, 1\]"),
    ("ekfac_scores", "test_y", lambda c: c.t, "test"),
    ("ekfac_s_test", "loss_fn", lambda c: ILA.layerwise_loss(c.fn, "font"), "head='font'"),
    ("ekfac_s_test", "l2", lambda c: None, "l2 must be given"),
    ("ekfac_s_test", "test_x", NAN_IMAGE, "NaN"),
    ("ekfac_self_influence", "batch_size", lambda c: 0, "batch_size"),
    ("perturbation_influence", "s_test", lambda c: {"w": c.lp["w"]}, "s_test"),
    ("perturbation_influence", "s_test", lambda c: jnp.zeros((1, 5)), "s_test"),
    ("perturbation_influence", "train_y", lambda c: c.labels[:3], "train targets"),
    ("perturbation_influence", "train_x", lambda c: np.full((12, 3), NAN), "NaN"),
    ("perturbation_influence", "batch_size", lambda c: 0, "batch_size"),
    ("training_set_attack", "epsilon", lambda c: 2.0, "epsilon"),
    ("training_set_attack", "direction", lambda c: "up", "direction"),
    ("training_set_attack", "k", lambda c: 0, "k"),
    ("training_set_attack", "k", lambda c: 9, "k"),
    ("training_set_attack", "tol", lambda c: NAN, "tol"),
    ("training_set_attack", "max_refit_steps", lambda c: 0.5, "max_refit_steps"),
    ("training_set_attack", "target_image", lambda c: c.x, "target"),
    ("training_set_attack", "l2", lambda c: -1.0, "l2"),
    ("predicted_loo_change_newton", "removed", lambda c: np.array([12]), "removed"),
    ("predicted_loo_change_newton", "damping", lambda c: NAN, "damping"),
    ("slope", "predicted", lambda c: [1.0, NAN], "NaN"),
    ("slope", "actual", lambda c: [1.0], "as many values"),
    ("Probe.logits", "features", lambda c: np.zeros((3, 5)), "features"),
    ("Probe.logits", "features", lambda c: np.full((3, 3), INF), "NaN"),
    ("MLPProbe.predict", "features", lambda c: np.zeros((3, 5)), "features"),
    ("erase", "features", lambda c: np.zeros((3, 5)), "features"),
]  # fmt: skip


@pytest.mark.parametrize("name", sorted(CALLS))
def test_default_call_runs(c, name):
    fn, kwargs = CALLS[name]
    fn(**kwargs(c))


@pytest.mark.parametrize(
    ("name", "arg", "bad", "match"),
    BAD,
    ids=[f"{n}-{a}-{i}" for i, (n, a, _, _) in enumerate(BAD)],
)
def test_bad_input_is_a_clear_error(c, name, arg, bad, match):
    fn, kwargs = CALLS[name]
    kw = kwargs(c)
    kw[arg] = bad(c)
    with pytest.raises(ValueError, match=match):
        fn(**kw)


def test_table_covers_every_call():
    assert {n for n, *_ in BAD} == set(CALLS)


# --------------------------------------------------------------------------- jaxtyping shapes
def _typechecked(fn):
    """``fn`` with its annotations, jaxtyping shapes included, checked on every call.

    Only here, not through jaxtyping's import hook: the hook would raise its own
    type error before the library's ValueErrors that the table above asserts.
    """
    return jaxtyping.jaxtyped(typechecker=beartype.beartype)(fn)


# the lambdas adapt a method or a closure; they carry no annotations (and jaxtyped needs a name)
ANNOTATED = sorted(n for n, (fn, _) in CALLS.items() if fn.__name__ != "<lambda>")


@pytest.mark.parametrize("name", ANNOTATED)
def test_default_call_matches_its_jaxtyping_shapes(c, name):
    """Each default call again, its arguments and result checked against the annotations
    (the jit caches are warm from test_default_call_runs)."""
    fn, kwargs = CALLS[name]
    _typechecked(fn)(**kwargs(c))


_A, _G = jnp.ones((2, 3, 4)), jnp.ones((2, 1, 3, 5))  # layer inputs [n s d], gradients [n k s o]
# annotated functions outside the table: the other saliency rules, helpers, internals' pieces
OTHER_CALLS = {
    "gradient_x_input": (S.gradient_x_input, _sal),
    "guided_backprop": (S.guided_backprop, _sal),
    "deconvnet": (S.deconvnet, _sal),
    "saliency": (S.saliency, lambda c: dict(_sal(c), reduce="none")),
    "make_baseline": (S.make_baseline, lambda c: dict(images=c.x, baseline=c.x[0])),
    "reduce_channels": (S.reduce_channels, lambda c: dict(grads=c.x, reduce="l2")),
    "guided_relu": (S.guided_relu.fun, lambda c: dict(x=c.maps)),  # the custom_vjp's forward
    "fill_images": (O.fill_images, lambda c: dict(images=c.x, fill="mean", sigma=1.0)),
    "occlusion_localisation": (
        O.occlusion_localisation,
        lambda c: dict(heatmaps=c.maps, masks=jnp.ones((2, 8, 8), bool)),
    ),
    "activation_sparsity": (A.activation_sparsity, _img),
    "activation_change": (A.activation_change, lambda c: dict(_img(c), others=_img(c)["images"])),
    "stack_params": (A.stack_params, lambda c: dict(snapshots=[(0, c.lp), (1, c.lp)])),
    "joint_probabilities": (E.joint_probabilities, lambda c: dict(aff=c.aff)),
    "localisation_rows": (
        L.localisation_rows,
        lambda c: dict(maps={"gradient": c.maps}, masks=jnp.ones((2, 8, 8), bool)),
    ),
    "kronecker_factors": (IE.kronecker_factors, lambda c: dict(a=_A, g=_G)),
    "rotated_grads": (
        IE.rotated_grads,
        lambda c: dict(q_a=jnp.eye(4), q_s=jnp.eye(5), a=_A, g=_G),
    ),
    "precondition": (
        IE.precondition,
        lambda c: dict(
            q_a=jnp.eye(4),
            q_s=jnp.eye(5),
            eigenvalues=jnp.ones((4, 5)),
            grads=jnp.ones((1, 4, 5)),
            damping=0.1,
        ),
    ),  # fmt: skip
}


@pytest.mark.parametrize("name", sorted(OTHER_CALLS))
def test_other_annotated_functions_match_their_jaxtyping_shapes(c, name):
    fn, kwargs = OTHER_CALLS[name]
    _typechecked(fn)(**kwargs(c))


def test_jaxtyping_check_rejects_a_shape_the_annotation_contradicts(c):
    """The check can fail: on an argument (attributions [n, 8, 8] against images [n, 16, 16, c],
    caught before the library's own ValueError) and on a result (a [n, h, w] map returned
    where the annotation promises [n, h, w, c])."""
    bad = dict(_sal(c), attributions=jnp.zeros((2, 8, 8)))
    with pytest.raises(ValueError, match="attributions"):
        S.completeness_gap(**bad)
    with pytest.raises(jaxtyping.TypeCheckError, match="attributions"):
        _typechecked(S.completeness_gap)(**bad)

    def maps_as_images(
        apply_fn, params, images: Image[AnyArray, "n h w c"], targets
    ) -> jaxtyping.Float[jax.Array, "n h w c"]:
        return S.vanilla_gradient(apply_fn, params, images, targets)

    maps_as_images(**_sal(c))  # unchecked, the wrong promise goes unnoticed
    with pytest.raises(jaxtyping.TypeCheckError, match="return"):
        _typechecked(maps_as_images)(**_sal(c))


# --------------------------------------------------------------------------- one uint8 convention
@pytest.mark.parametrize(
    "name", ["vanilla_gradient", "occlusion", "activation_maps", "dead_filters", "embed", "predict"]
)
def test_uint8_is_divided_by_255_by_every_entry_point(c, name):
    """uint8 gives the maps of the same images as floats in [0, 1] (issue 13: not 209x smaller).

    Where the image is converted eagerly the bits are equal; the chunked passes
    (embed, predict) convert inside their jitted loop, where XLA may fuse the
    division into the first layer, so they agree to float32 rounding.
    """
    u8 = np.asarray(c.x * 255).astype(np.uint8)
    f = jnp.asarray(u8).astype(jnp.float32) / 255.0
    fn, kwargs = CALLS[name]
    a, b = fn(**dict(kwargs(c), images=u8)), fn(**dict(kwargs(c), images=f))
    for la, lb in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        if name in ("embed", "predict"):
            np.testing.assert_allclose(la, lb, rtol=1e-4, atol=1e-5)
        else:
            np.testing.assert_array_equal(la, lb)


def test_uint8_agrees_with_as_float_to_an_ulp():
    """The one conversion (jitted or eager) and numpy's data.as_float differ by at most one ulp."""
    u8 = np.arange(256, dtype=np.uint8)
    np.testing.assert_array_max_ulp(np.asarray(uint8_to_float(u8)), as_float(u8), maxulp=1)
    np.testing.assert_array_equal(uint8_to_float(u8), jax.jit(uint8_to_float)(u8))


def test_evaluate_rejects_a_head_smaller_than_the_labels(c, smoke):
    small_head = functional(build(2, 2, seed=0, image_shape=(*smoke.config.image_size, 3)))
    split = smoke.split("test").take(np.arange(8))
    with pytest.raises(ValueError, match="script head has 2 classes"):
        train.evaluate(small_head[1], small_head[0], split)


# --------------------------------------------------------------------------- the command line
def _cli(argv, capsys):
    """(exit status, stderr lines) of ``scriptlab argv``, in process."""
    from scriptlab import cli

    try:
        code = cli.main(argv)
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line]


@pytest.fixture
def no_work(monkeypatch):
    """Record any rendering or training the CLI starts."""
    from scriptlab import data

    started = []

    def record(*a, **k):
        started.append(a)
        raise RuntimeError("work started")

    monkeypatch.setattr(data, "load", record)
    monkeypatch.setattr(train, "train", record)
    return started


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["experiment", "--seeds", "0"], "--seeds"),
        (["experiment", "--seeds", "-2"], "--seeds"),
        (["experiment", "--seeds", "1.5"], "--seeds"),
        (["train", "--epochs", "0"], "--epochs"),
        (["train", "--seed", "-1"], "--seed"),
        (["train", "--mode", "nope"], "--mode"),
        (["dataset", "--workers", "0"], "--workers"),
        (["dataset", "--preset", "nope"], "--preset"),
        (["dataset", "--seed", "x"], "--seed"),
    ],
)
def test_cli_rejects_bad_arguments_in_one_line(capsys, no_work, argv, match):
    code, err = _cli(argv, capsys)
    assert code == 2 and len(err) == 1 and match in err[0], err
    assert no_work == []


@pytest.mark.parametrize("command", ["dataset", "train", "experiment"])
def test_cli_checks_the_output_folder_before_any_work(tmp_path, capsys, no_work, command):
    existing = tmp_path / "file"
    existing.write_text("x")
    code, err = _cli([command, "--preset", "smoke", "--out", str(existing)], capsys)
    assert code == 2 and err == [
        f"scriptlab {command}: error: --out {existing} exists and is not a folder"
    ]
    code, err = _cli([command, "--preset", "smoke", "--out", str(existing / "sub")], capsys)
    assert code == 2 and "cannot create" in err[0]
    assert no_work == []


def test_cli_refuses_a_symlink_out_of_the_output_folder(tmp_path, capsys, no_work):
    outside = tmp_path / "precious.json"
    outside.write_text("keep")
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").symlink_to(outside)
    code, err = _cli(["dataset", "--preset", "smoke", "--out", str(out)], capsys)
    assert code == 2 and "symbolic link" in err[0]
    assert outside.read_text() == "keep" and no_work == []


def test_cli_runtime_errors_are_one_line_unless_debug(tmp_path, capsys, monkeypatch):
    from scriptlab import data

    def fail(*a, **k):
        raise ValueError("the cache\nis gone")

    monkeypatch.setattr(data, "load", fail)
    argv = ["dataset", "--preset", "smoke", "--out", str(tmp_path / "o")]
    code, err = _cli(argv, capsys)
    assert code == 2 and err == ["scriptlab dataset: error: the cache is gone"]
    with pytest.raises(ValueError, match="the cache"):
        _cli(["--debug", *argv], capsys)


def test_cli_version(capsys):
    from scriptlab import __version__, cli

    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"scriptlab {__version__}"


def test_cli_train_writes_strict_json(tmp_path, capsys, monkeypatch, smoke):
    model = build(len(smoke.scripts), len(smoke.styles), image_shape=(*smoke.config.image_size, 3))
    history = [{"epoch": 1, "val_script_acc": float("nan"), "val_font_acc": 0.5}]
    fake = train.Result(model, train.make_train_config(preset="smoke"), history, smoke.key, [])
    monkeypatch.setattr(train, "train", lambda cfg: fake._replace(config=cfg))
    code, _ = _cli(["train", "--preset", "smoke", "--out", str(tmp_path / "t")], capsys)
    assert code == 0

    def no_constants(name):
        raise AssertionError(f"bare {name} in metrics.json")

    metrics = json.loads((tmp_path / "t" / "metrics.json").read_text(), parse_constant=no_constants)
    assert metrics[0]["val_script_acc"] is None
    train.restore(tmp_path / "t")


FIVE = jax.random.uniform(jax.random.key(5), (5, 16, 16, 3))  # a batch size no other test uses


@pytest.mark.parametrize(
    ("name", "arg", "bad", "jitted"),
    [
        ("vanilla_gradient", "targets", lambda c: np.array([0, 1, 2, 3, 9]), "_gradient_map"),
        ("vanilla_gradient", "images", lambda c: FIVE.at[0, 0, 0, 0].set(NAN), "_gradient_map"),
        ("occlusion", "targets", lambda c: np.array([0, 1, 2, 3, -1]), "_occlusion"),
        ("occlusion", "images", lambda c: FIVE * 255, "_occlusion"),
        ("predict", "images", lambda c: FIVE.at[0, 0, 0, 0].set(INF), "_predict"),
        ("embed", "images", lambda c: FIVE.at[0, 0, 0, 0].set(NAN), "_forward_chunks"),
    ],
)
def test_bad_input_is_rejected_before_tracing(c, name, arg, bad, jitted):
    """The checks run eagerly: a rejected call traces and compiles nothing (the batch of
    five is a shape no other call has compiled, so any trace would grow the cache)."""
    from scriptlab.interpret import _common

    jitted = {
        "_gradient_map": S._gradient_map,
        "_occlusion": O._occlusion,
        "_predict": train._predict,
        "_forward_chunks": _common._forward_chunks,
    }[jitted]
    fn, kwargs = CALLS[name]
    kw = dict(kwargs(c), images=FIVE)
    if "targets" in kw:
        kw["targets"] = np.zeros(5, int)
    kw[arg] = bad(c)
    before = jitted._cache_size()
    with pytest.raises(ValueError):
        fn(**kw)
    assert jitted._cache_size() == before
