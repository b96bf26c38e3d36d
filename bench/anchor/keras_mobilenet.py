"""torchvision's MobileNetV2 made to compute exactly keras.applications.MobileNetV2.

Two differences matter besides the weight layouts:
- Keras pads a stride-2 3x3 'valid' convolution with ZeroPadding2D(correct_pad): ((0, 1), (0, 1))
  on an even input (one row/column at the bottom/right only); torchvision pads 1 on every side.
  Those convolutions get padding 0 behind an explicit asymmetric pad.
- BatchNorm epsilon is 1e-3 in Keras, 1e-5 in torchvision.

The weights come from bench/anchor/export.ts: `<prefix>.json` (Keras names, shapes, offsets) and
`<prefix>.bin` (float32), i.e. what our own loader matched.
"""

import json

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import mobilenet_v2


class KerasPad(nn.Module):
    """Keras' correct_pad for a 3x3 stride-2 valid conv: (h % 2, 1) rows, (w % 2, 1) columns."""

    def forward(self, x):
        h, w = x.shape[-2:]
        return F.pad(x, (w % 2, 1, h % 2, 1))


def keras_layers(model):
    """(Keras layer name, torch module) for every weighted layer of the base, plus the top."""
    f = model.features
    out = [("Conv1", f[0][0]), ("bn_Conv1", f[0][1])]
    for i in range(17):
        block = f[i + 1].conv
        if i == 0:
            p = "expanded_conv_"
            mods = [("depthwise", block[0][0]), ("depthwise_BN", block[0][1]), ("project", block[1]), ("project_BN", block[2])]
        else:
            p = f"block_{i}_"
            mods = [
                ("expand", block[0][0]),
                ("expand_BN", block[0][1]),
                ("depthwise", block[1][0]),
                ("depthwise_BN", block[1][1]),
                ("project", block[2]),
                ("project_BN", block[3]),
            ]
        out += [(p + n, m) for n, m in mods]
    out += [("Conv_1", f[18][0]), ("Conv_1_bn", f[18][1])]
    return out


def read_weights(prefix):
    with open(prefix + ".json") as fh:
        index = json.load(fh)
    flat = np.fromfile(prefix + ".bin", dtype="<f4")
    tensors = {}
    for t in index["tensors"]:
        n = int(np.prod(t["shape"]))
        tensors[t["name"]] = flat[t["offset"] : t["offset"] + n].reshape(t["shape"])
    return index, tensors


def _set(param, value, name):
    value = torch.from_numpy(np.ascontiguousarray(value))
    if tuple(param.shape) != tuple(value.shape):
        raise ValueError(f"{name}: torch shape {tuple(param.shape)} != converted Keras shape {tuple(value.shape)}")
    with torch.no_grad():
        param.copy_(value)


def keras_mobilenet_v2(prefix, num_classes=None, keras_numerics=True):
    """A torchvision MobileNetV2 holding the Keras weights at `prefix`, computing what Keras computes.

    num_classes None: the ImageNet top from the file (error when it has none); otherwise a new
    Dropout + Linear head is left for the caller to initialise. keras_numerics False keeps
    torchvision's symmetric padding and epsilon 1e-5 (the naive conversion; the check's control).
    """
    index, w = read_weights(prefix)
    alpha = index["alpha"]
    model = mobilenet_v2(weights=None, width_mult=alpha, num_classes=1000 if num_classes is None else num_classes)
    used = set()
    for name, mod in keras_layers(model):
        if isinstance(mod, nn.BatchNorm2d):
            if keras_numerics:
                mod.eps = 1e-3
            for attr, key in (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"), ("running_var", "moving_variance")):
                _set(getattr(mod, attr), w[f"{name}/{key}"], f"{name}/{key}")
                used.add(f"{name}/{key}")
        else:
            if mod.groups > 1:  # depthwise: Keras [kh, kw, in, 1] -> torch [in, 1, kh, kw]
                key = f"{name}/depthwise_kernel"
                _set(mod.weight, w[key].transpose(2, 3, 0, 1), key)
            else:  # Keras [kh, kw, in, out] -> torch [out, in, kh, kw]
                key = f"{name}/kernel"
                _set(mod.weight, w[key].transpose(3, 2, 0, 1), key)
            used.add(key)
    # Keras' padding on every stride-2 3x3 convolution (Conv1 and the stride-2 depthwise convs).
    if keras_numerics:
        _keras_padding(model)
    if num_classes is None:
        if "predictions/kernel" not in w:
            raise ValueError(f"{prefix}: no ImageNet top (predictions/kernel) in the weights")
        _set(model.classifier[1].weight, w["predictions/kernel"].T, "predictions/kernel")
        _set(model.classifier[1].bias, w["predictions/bias"], "predictions/bias")
        used |= {"predictions/kernel", "predictions/bias"}
    left = sorted(set(w) - used - ({"predictions/kernel", "predictions/bias"} if num_classes is not None else set()))
    if left:
        raise ValueError(f"{prefix}: weights not placed in the torch model: {', '.join(left[:5])}")
    return model


def _keras_padding(model):
    targets = [
        (parent, name, child)
        for parent in model.modules()
        for name, child in parent.named_children()
        if isinstance(child, nn.Conv2d) and child.stride == (2, 2) and child.kernel_size == (3, 3)
    ]
    for parent, name, child in targets:
        child.padding = (0, 0)
        setattr(parent, name, nn.Sequential(KerasPad(), child))


def preprocess(pixels_nhwc_uint8):
    """uint8 NHWC RGB 0..255 -> float NCHW in [-1, 1] (the classifier's x / 127.5 - 1)."""
    x = torch.from_numpy(pixels_nhwc_uint8).permute(0, 3, 1, 2).float()
    return x * (1.0 / 127.5) - 1.0
