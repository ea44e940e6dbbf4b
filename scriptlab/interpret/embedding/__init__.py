"""Embedding views: PCA, an exact t-SNE written in JAX, and how good a 2-D picture is.

The essay "Understanding Convolutional Neural Networks": "A well separated
embedding space suggests that the network has learnt to discriminate between
different classes ... The most widely used method is t-SNE that requires tuning
various parameters of the algorithm and can sometimes lead to confusing
results." This module gives the pieces to look, and to check what the picture
is worth:

- ``embed``: the model's embedding (``out.embedding`` or a named activation) of a
  batch of images, computed in memory-bounded chunks.
- ``pca``: a jitted PCA, for a quick first look and for t-SNE's initialisation.
- ``tsne``: exact-gradient t-SNE, jitted end to end (neighbours, perplexity
  calibration, PCA init, optimisation): input affinities on the 3 * perplexity
  nearest neighbours (as scikit-learn's and openTSNE's defaults), the repulsion
  summed over all N^2 pairs in row blocks (never an N x N matrix), early
  exaggeration, momentum with gains, the KL divergence after every iteration and
  every k-th iterate for an animation.
- ``trustworthiness`` and ``knn_accuracy``: how faithful a 2-D map is, and how
  well labels can be read off any space (the embedding, or the map).

Where exact t-SNE stops being sensible: each iteration costs O(N^2) work and
O(N * block_size) memory, so time, not memory, is the limit (benchmarks/bench_tsne.py
measures both against scikit-learn). Beyond about 10,000 points use an
approximate gradient: Barnes-Hut (O(N log N)) or FFT-accelerated interpolation
(O(N), FIt-SNE), both in openTSNE.

References: van der Maaten & Hinton 2008 (t-SNE, momentum and gains, early
exaggeration), https://jmlr.org/papers/v9/vandermaaten08a.html; van der Maaten 2014 (kNN
input affinities), https://jmlr.org/papers/v15/vandermaaten14a.html; Belkina et al. 2019
and Kobak & Berens 2019 (learning rate N / exaggeration, PCA initialisation); Venna &
Kaski 2001 (trustworthiness).

Layout: ``projection`` (``embed``, ``pca``), ``neighbours`` (``affinities``), ``optimise``
(t-SNE: the objective and the optimiser) and ``quality`` (``trustworthiness``,
``knn_accuracy``). Every name is importable from ``scriptlab.interpret.embedding`` as before.
"""

from scriptlab.interpret.embedding.neighbours import Affinities, affinities, joint_probabilities
from scriptlab.interpret.embedding.optimise import TSNEResult, kl_divergence_and_gradient, tsne
from scriptlab.interpret.embedding.projection import PCA, embed, pca
from scriptlab.interpret.embedding.quality import knn_accuracy, trustworthiness

__all__ = [
    "PCA",
    "Affinities",
    "TSNEResult",
    "embed",
    "pca",
    "affinities",
    "joint_probabilities",
    "kl_divergence_and_gradient",
    "tsne",
    "trustworthiness",
    "knn_accuracy",
]
