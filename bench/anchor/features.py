"""Pooled features and ImageNet logits of the converted model on given pixels (the conversion check).

    /usr/bin/python3 bench/anchor/features.py <weights prefix> <pixels.u8> <size> <out.f32> [--naive]

pixels.u8: uint8 NHWC RGB; out.f32: float32 pooled [n, C], then logits [n, 1000]
when the weights have the ImageNet top, then with --naive the pooled features of the same weights
in torchvision's own padding and epsilon (the check's control: that conversion must NOT agree). Prints one JSON
line with n, channels and the torch version.
"""

import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from keras_mobilenet import keras_mobilenet_v2, preprocess, read_weights  # noqa: E402


def main():
    naive = "--naive" in sys.argv
    args = [a for a in sys.argv[1:] if a != "--naive"]
    prefix, pixels_file, size, out_file = args[0], args[1], int(args[2]), args[3]
    torch.set_num_threads(int(os.environ.get("ANCHOR_THREADS", "2")))
    px = np.fromfile(pixels_file, dtype=np.uint8).reshape(-1, size, size, 3)
    top = "predictions/kernel" in read_weights(prefix)[1]
    model = keras_mobilenet_v2(prefix, num_classes=None if top else 1).eval()
    with torch.no_grad():
        pooled = model.features(preprocess(px)).mean(dim=(2, 3))
        parts = [pooled.numpy().ravel()]
        if top:
            parts.append(model.classifier[1](pooled).numpy().ravel())
        if naive:
            plain = keras_mobilenet_v2(prefix, num_classes=1, keras_numerics=False).eval()
            parts.append(plain.features(preprocess(px)).mean(dim=(2, 3)).numpy().ravel())
    np.concatenate(parts).astype("<f4").tofile(out_file)
    print(json.dumps({"n": px.shape[0], "channels": pooled.shape[1], "logits": top, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
