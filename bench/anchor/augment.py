"""train.py's augmentation on given pixels and draws (the check that it is training/augment.ts').

    /usr/bin/python3 bench/anchor/augment.py <pixels.u8> <size> <draws.json> <out.f32>

pixels.u8: uint8 NHWC RGB; draws.json: [{flipH, flipV, angle, zoom, contrast}] per image;
out.f32: float32 NHWC 0..255.
"""

import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train import apply_augmentation  # noqa: E402


def main():
    pixels_file, size, draws_file, out_file = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    torch.set_num_threads(1)
    px = torch.from_numpy(np.fromfile(pixels_file, dtype=np.uint8).reshape(-1, size, size, 3)).permute(0, 3, 1, 2)
    d = json.load(open(draws_file))
    col = lambda k, dt=torch.float32: torch.tensor([r[k] for r in d], dtype=dt)  # noqa: E731
    out = apply_augmentation(px, col("flipH", torch.bool), col("flipV", torch.bool), col("angle"), col("zoom"), col("contrast"))
    out.permute(0, 2, 3, 1).contiguous().numpy().astype("<f4").tofile(out_file)


if __name__ == "__main__":
    main()
