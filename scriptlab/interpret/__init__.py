"""Interpretability transforms: pure, jitted, batched functions over an apply_fn.

Each method takes ``(apply_fn, params, images, ...)``; the contract ``apply_fn``
meets is ``scriptlab.protocols.ApplyFn`` (``scriptlab.model.functional`` gives one).
"""

# Gradient-based views (saliency family, class model visualisation, localisation, sanity checks).
# The dispatcher saliency.saliency stays in its module: exporting it here would shadow the module.
# Inside the network: activations, dead filters, filters, receptive fields, top-k patches, occlusion
# (Zeiler & Fergus 2014). occlusion() is exported as occlusion_map so the module name stays a module.
from scriptlab.interpret.activations import (
    ActivationChange,
    DeadFilters,
    activation_change,
    activation_maps,
    activation_sparsity,
    dead_filters,
    feature_grid,
    sparsity_curve,
)
from scriptlab.interpret.classviz import ClassModel, class_model

# Judging explanations against a known shortcut (Adebayo, Muelly, Abelson & Kim 2022): K-SSD,
# CCM, FAM, per-crop detection AUC, class-model style readout, top-k shares of rankings
from scriptlab.interpret.detection import (
    ccm,
    detection_auc,
    fam,
    kssd,
    map_distance,
    map_statistic,
    style_readout,
)

# Embedding views: PCA, exact-gradient t-SNE, map quality (van der Maaten & Hinton 2008)
from scriptlab.interpret.embedding import (
    PCA,
    Affinities,
    TSNEResult,
    affinities,
    embed,
    joint_probabilities,
    kl_divergence_and_gradient,
    knn_accuracy,
    pca,
    trustworthiness,
    tsne,
)

# Faithfulness: deletion and insertion (Petsiuk et al. 2018), ROAD (Rong et al. 2022)
from scriptlab.interpret.faithfulness import (
    FaithfulnessCurve,
    deletion_curve,
    faithfulness_rows,
    ink_maps,
    insertion_curve,
    random_maps,
    road_curve,
    road_impute,
)
from scriptlab.interpret.filters import conv_kernel, filter_grid, filter_images, filter_noisiness

# Training-data attribution (Koh & Liang 2017)
from scriptlab.interpret.influence import (
    Influence,
    InverseHVPState,
    LOOResult,
    hvp,
    influence_scores,
    inverse_hvp,
    loo_retrain,
    self_influence,
)
from scriptlab.interpret.localisation import (
    localisation_rows,
    localisation_scores,
    localisation_table,
)
from scriptlab.interpret.occlusion import Occlusion, occlusion_localisation
from scriptlab.interpret.occlusion import occlusion as occlusion_map
from scriptlab.interpret.ranking import TopKShares, neighbour_shares, ranking_shares
from scriptlab.interpret.receptive import (
    ReceptiveField,
    TopPatches,
    UnitShares,
    empirical_receptive_field,
    label_purity,
    receptive_box,
    receptive_crops,
    receptive_fields,
    top_activating,
    trunk_fn,
    unit_shares,
)
from scriptlab.interpret.saliency import (
    METHODS as SALIENCY_METHODS,
)
from scriptlab.interpret.saliency import (
    completeness_gap,
    deconvnet,
    grad_cam,
    gradient_x_input,
    guided_backprop,
    integrated_gradients,
    smoothgrad,
    vanilla_gradient,
)
from scriptlab.interpret.sanity import (
    cascading_check,
    data_randomisation_check,
    spearman,
    ssim,
    verdicts,
)

# Statistics every estimate carries: t-test, Holm / Bonferroni, ROC AUC, bootstrap, seeds
from scriptlab.interpret.stats import (
    Estimate,
    SeedSummary,
    TTest,
    adjust_p_values,
    bootstrap,
    bootstrap_auc,
    bootstrap_difference,
    bootstrap_mean,
    prediction_t_test,
    resample_indices,
    roc_auc,
    seed_summary,
    t_test,
)

# Concept activation vectors and their significance test (Kim et al. 2018); tcav() is exported
# as tcav_test so the module name stays a module.
from scriptlab.interpret.tcav import (
    CAV,
    TCAVResult,
    fit_cav,
    fit_cavs,
    layer_gradients,
    tcav_scores,
)
from scriptlab.interpret.tcav import tcav as tcav_test

__all__ = [
    "ActivationChange",
    "activation_change",
    "activation_maps",
    "activation_sparsity",
    "adjust_p_values",
    "Affinities",
    "affinities",
    "bootstrap",
    "bootstrap_auc",
    "bootstrap_difference",
    "bootstrap_mean",
    "cascading_check",
    "CAV",
    "ccm",
    "class_model",
    "ClassModel",
    "completeness_gap",
    "conv_kernel",
    "data_randomisation_check",
    "dead_filters",
    "DeadFilters",
    "deconvnet",
    "deletion_curve",
    "detection_auc",
    "embed",
    "empirical_receptive_field",
    "Estimate",
    "faithfulness_rows",
    "FaithfulnessCurve",
    "fam",
    "feature_grid",
    "filter_grid",
    "filter_images",
    "filter_noisiness",
    "fit_cav",
    "fit_cavs",
    "grad_cam",
    "gradient_x_input",
    "guided_backprop",
    "hvp",
    "Influence",
    "influence_scores",
    "ink_maps",
    "insertion_curve",
    "integrated_gradients",
    "inverse_hvp",
    "InverseHVPState",
    "joint_probabilities",
    "kl_divergence_and_gradient",
    "knn_accuracy",
    "kssd",
    "label_purity",
    "layer_gradients",
    "localisation_rows",
    "localisation_scores",
    "localisation_table",
    "loo_retrain",
    "LOOResult",
    "map_distance",
    "map_statistic",
    "neighbour_shares",
    "Occlusion",
    "occlusion_localisation",
    "occlusion_map",
    "PCA",
    "pca",
    "random_maps",
    "ranking_shares",
    "receptive_box",
    "receptive_crops",
    "receptive_fields",
    "ReceptiveField",
    "resample_indices",
    "road_curve",
    "road_impute",
    "roc_auc",
    "SALIENCY_METHODS",
    "seed_summary",
    "SeedSummary",
    "self_influence",
    "smoothgrad",
    "sparsity_curve",
    "spearman",
    "ssim",
    "style_readout",
    "t_test",
    "prediction_t_test",
    "tcav_test",
    "tcav_scores",
    "TCAVResult",
    "top_activating",
    "TopKShares",
    "TopPatches",
    "trunk_fn",
    "trustworthiness",
    "tsne",
    "TSNEResult",
    "TTest",
    "unit_shares",
    "UnitShares",
    "vanilla_gradient",
    "verdicts",
]
