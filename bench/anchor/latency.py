"""Single-image latency of torchvision's MobileNetV2 (Keras padding and epsilon, as keras_mobilenet.py
builds it) written well: eval mode, traced, frozen and torch.jit.optimize_for_inference (BatchNorm folded,
oneDNN), 1x3xHxW float32, p50 of --runs calls after a warm-up, for 1 and 2 intra-op threads.
Weights are random (latency does not depend on their values; the conversion check lives in
test/anchor-weights.test.ts). Prints one JSON line per (alpha, size, threads).
"""

import argparse
import json
import time

import torch
from torchvision.models import mobilenet_v2

from keras_mobilenet import _keras_padding


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--alphas", default="1.0,0.35")
    p.add_argument("--sizes", default="224,160")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--runs", type=int, default=50)
    a = p.parse_args()
    torch.manual_seed(0)
    for alpha in [float(x) for x in a.alphas.split(",")]:
        model = mobilenet_v2(weights=None, width_mult=alpha, num_classes=2).eval()
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eps = 1e-3
        _keras_padding(model)
        for size in [int(x) for x in a.sizes.split(",")]:
            x = torch.rand(1, 3, size, size) * 2 - 1
            with torch.no_grad():
                graph = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model, x)))
                for threads in [int(t) for t in a.threads.split(",")]:
                    torch.set_num_threads(threads)
                    for _ in range(10):
                        graph(x)
                    times = []
                    for _ in range(a.runs):
                        t = time.perf_counter()
                        graph(x)
                        times.append((time.perf_counter() - t) * 1000)
                    times.sort()
                    print(json.dumps({"alpha": alpha, "size": size, "threads": threads, "p50Ms": times[len(times) // 2], "minMs": times[0]}), flush=True)


if __name__ == "__main__":
    main()
