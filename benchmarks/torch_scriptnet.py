"""A PyTorch port of ScriptNet for side-by-side benchmarks (needs `pip install torch==2.13.0`).

Same layers as ``scriptlab.model.ScriptNet`` (per-image standardisation,
strided 4x4 stem, 3x3 convs, 2x2 max pools, dense 128, script head), with the
weights copied from a JAX parameter pytree, so the two frameworks compute the
same function and a benchmark can check their outputs against each other
before it times them. Dropout (0.25 after the trunk, 0.5 after the embedding)
runs in ``train()`` mode only; the font head is left out (a 128x5 matmul).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class TorchScriptNet(nn.Module):
    """ScriptNet's evaluation forward (script logits) in PyTorch, NCHW."""

    def __init__(self, channels=(16, 32, 64), hidden=128, n_scripts=10, image_hw=(32, 64)):
        super().__init__()
        c1, c2, c3 = channels
        h, w = image_hw
        # XLA's SAME padding of a 4x4 stride-2 conv on an even size is one pixel each side
        self.conv1 = nn.Conv2d(3, c1, 4, stride=2, padding=1)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.conv3 = nn.Conv2d(c2, c3, 3, padding=1)
        self.dense = nn.Linear((h // 8) * (w // 8) * c3, hidden)
        self.script_head = nn.Linear(hidden, n_scripts)
        self.drop_trunk, self.drop_embedding = nn.Dropout(0.25), nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(2, 3), keepdim=True)
        var = ((x - mean) ** 2).mean(dim=(2, 3), keepdim=True)
        x = (x - mean) / (torch.sqrt(var + 1e-12) + 0.05)
        x = torch.relu(self.conv1(x))
        x = nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = nn.functional.max_pool2d(torch.relu(self.conv3(x)), 2)
        x = self.drop_trunk(x).permute(0, 2, 3, 1).flatten(1)  # JAX flattens NHWC
        return self.script_head(self.drop_embedding(torch.relu(self.dense(x))))


def _copy(param: torch.Tensor, array) -> None:
    param.copy_(torch.from_numpy(np.array(array, np.float32)))  # a writable copy, as torch wants


def from_jax(params) -> TorchScriptNet:
    """A ``TorchScriptNet`` holding the weights of a ScriptNet parameter pytree (``model.functional``)."""
    c1, c2, c3 = (params[k]["kernel"][...].shape[-1] for k in ("conv1", "conv2", "conv3"))
    hidden, n_scripts = params["script_head"]["kernel"][...].shape
    net = TorchScriptNet((c1, c2, c3), hidden, n_scripts)
    with torch.no_grad():
        for name in ("conv1", "conv2", "conv3", "dense", "script_head"):
            kernel = np.asarray(params[name]["kernel"][...])
            # conv HWIO -> OIHW; linear (in, out) -> (out, in)
            _copy(
                getattr(net, name).weight,
                kernel.transpose(3, 2, 0, 1) if kernel.ndim == 4 else kernel.T,
            )
            _copy(getattr(net, name).bias, params[name]["bias"][...])
    return net.eval()


def to_nchw(images) -> torch.Tensor:
    """float32[N, H, W, C] (NumPy or JAX) -> a contiguous torch NCHW tensor."""
    return torch.from_numpy(
        np.ascontiguousarray(np.asarray(images, np.float32).transpose(0, 3, 1, 2))
    )
