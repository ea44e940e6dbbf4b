"""Draw docs/_static/overview.png, the README's picture, from the zoo baseline.

    python docs/make_overview.py      # needs the workshop dataset and baseline (scriptlab prepare)

Top row: one test crop per script, titled with its script and font style. Below: what three
saliency methods of the baseline see in each crop (absolute values, one colour scale per row).
"""

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from scriptlab import data, fonts, viz, zoo
from scriptlab.interpret import saliency as S

OUT = Path(__file__).with_name("_static") / "overview.png"
METHODS = ("gradient_x_input", "smoothgrad", "grad_cam")


def main() -> None:
    viz.style()
    ds = data.load("workshop", seed=0, progress=False)
    model = zoo.load("baseline", progress=False)
    test = ds.test
    idx = np.array([int(np.flatnonzero(test.script == s)[0]) for s in range(len(fonts.SCRIPTS))])
    crops = test.take(idx)
    images = data.as_float(crops.images)
    maps = [
        np.abs(np.asarray(S.saliency(model.apply_fn, model.params, images, crops.script, method=m)))
        for m in METHODS
    ]
    fig, axes = plt.subplots(1 + len(METHODS), len(idx), figsize=(15, 4.2))
    for j in range(len(idx)):
        axes[0, j].imshow(crops.images[j])
        axes[0, j].set_title(
            f"{fonts.SCRIPTS[crops.script[j]]}\n{fonts.STYLES[crops.style[j]]}", fontsize=9
        )
        for i, m in enumerate(maps):
            axes[i + 1, j].imshow(
                m[j].sum(-1) if m[j].ndim == 3 else m[j],
                cmap="magma",
                vmin=0,
                vmax=np.percentile(m, 99.5),
            )
    for i, name in enumerate(("crop", *METHODS)):
        axes[i, 0].set_ylabel(name.replace("_", " "), fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    OUT.parent.mkdir(exist_ok=True)
    fig.savefig(OUT, dpi=80)
    # a 128-colour palette keeps the committed picture small (about a third of the RGB file)
    Image.open(OUT).convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(
        OUT, optimize=True
    )
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} kB)")


if __name__ == "__main__":
    main()
