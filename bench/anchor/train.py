"""Our training recipe in PyTorch, written well: the anchor that `npm run bench:anchor` runs beside ours.

    /usr/bin/python3 bench/anchor/train.py <config.json>

The config (written by bench/anchor.ts from training/options.ts' resolved options) names the
converted weights (bench/anchor/export.ts), the split file of the seed (our splitDataset) and the
recipe. Prints progress to stderr and one JSON line of results to stdout.

What "written well" means here, as in our own pipeline:
- the frozen part runs under no_grad with BatchNorm in inference mode, once per image and view:
  un-augmented phase 1 trains the head on pooled features computed once; an augmented phase 1
  (--recipe keras) computes each epoch's view set once and trains the head on its pooled features;
- phase 2 runs each augmented batch through the frozen part up to the freeze boundary (no_grad),
  then trains the tail (BatchNorm still in inference mode, its gamma/beta trained) on it; the
  validation images' boundary activations are computed once, in the same pass as their pooled
  features, and every epoch evaluates only the tail on them;
- glibc malloc thresholds set (re-exec with MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_ unless
  given), so the large activation buffers are not mapped and unmapped on every step (checked
  here: with them a freed 100 MB array stays in the heap, without them it is unmapped);
- OMP_WAIT_POLICY=PASSIVE when the machine is oversubscribed (load average above the core count);
- torch threads = the config's threads (2), images decoded by a thread pool (PIL releases the GIL);
- the model and its inputs in channels_last memory format (oneDNN's fast path: the frozen forward
  at 224 took 4.4x less CPU time than in the default NCHW layout when measured here).
"""

import json
import math
import os
import resource
import sys
import time

MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 31)}


def start_env():
    env = dict(MALLOC_ENV)
    # OpenMP's default spin-waiting collapses when the cores are oversubscribed (measured here at
    # load ~20 on 2 cores: the frozen forward took 4x the CPU time and 3.7x the wall time of
    # PASSIVE); on an idle machine the default is kept.
    # bench:anchor decides from the load before its first run (ANCHOR_OVERSUBSCRIBED): the load
    # average right after our own training run would otherwise pick PASSIVE on an idle machine.
    given = os.environ.get("ANCHOR_OVERSUBSCRIBED")
    loaded = given == "1" if given in ("0", "1") else os.getloadavg()[0] > (os.cpu_count() or 1)
    if "OMP_WAIT_POLICY" not in os.environ and loaded:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    return env


if __name__ == "__main__" and "ANCHOR_STARTED" not in os.environ:
    # glibc and OpenMP read these at start-up only: re-exec with them set.
    os.execve(sys.executable, [sys.executable, *sys.argv], {**start_env(), **os.environ, "ANCHOR_STARTED": "1"})

from concurrent.futures import ThreadPoolExecutor  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from keras_mobilenet import keras_mobilenet_v2  # noqa: E402

T0 = time.perf_counter()


def log(msg):
    print(f"[torch {time.perf_counter() - T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def decode(path, size, resize):
    with Image.open(path) as im:
        im.draft("RGB", (size, size))  # JPEG DCT-domain downscale, as libvips' shrink-on-load
        im = ImageOps.exif_transpose(im).convert("RGB")
        if resize == "crop":
            im = ImageOps.fit(im, (size, size), Image.BILINEAR)
        else:
            im = im.resize((size, size), Image.BILINEAR)
        return np.asarray(im, dtype=np.uint8)


def load_images(rows, size, resize, threads):
    def one(r):
        try:
            return decode(r["path"], size, resize), r["label"]
        except Exception as e:  # skipped and listed, never fatal, as ours
            log(f"skipped {r['path']}: {e}")
            return None

    with ThreadPoolExecutor(threads) as pool:
        got = [g for g in pool.map(one, rows) if g is not None]
    x = torch.from_numpy(np.stack([g[0] for g in got])).permute(0, 3, 1, 2).contiguous()  # uint8 NCHW
    y = torch.tensor([g[1] for g in got], dtype=torch.long)
    return x, y


CL = torch.channels_last


def to_input(x_uint8):
    return (x_uint8.float() * (1.0 / 127.5) - 1.0).contiguous(memory_format=CL)


def augment(x_uint8, cfg, gen):
    """Keras' RandomFlip + RandomRotation (+ RandomZoom, RandomContrast), drawn per image."""
    n = x_uint8.shape[0]
    flip = cfg["flip"]
    fh = (torch.rand(n, generator=gen) < 0.5) & torch.tensor(flip in ("horizontal", "horizontal_and_vertical"))
    fv = (torch.rand(n, generator=gen) < 0.5) & torch.tensor(flip in ("vertical", "horizontal_and_vertical"))
    angle = (torch.rand(n, generator=gen) * 2 - 1) * cfg["rotation"] * 2 * math.pi
    zoom = 1 + (torch.rand(n, generator=gen) * 2 - 1) * cfg["zoom"]
    contrast = 1 + (torch.rand(n, generator=gen) * 2 - 1) * cfg["contrast"]
    x = apply_augmentation(x_uint8, fh, fv, angle, zoom, contrast if cfg["contrast"] > 0 else None)
    return (x * (1.0 / 127.5) - 1.0).contiguous(memory_format=CL)


def apply_augmentation(x_uint8, fh, fv, angle, zoom, contrast=None):
    """training/augment.ts' applyAugmentation on a batch: flip, then rotate/zoom about the centre,
    bilinear with reflect fill (d c b a | a b c d), then contrast; float NCHW 0..255 out."""
    n = x_uint8.shape[0]
    x = x_uint8.float()
    if (angle != 0).any() or (zoom != 1).any() or fh.any() or fv.any():
        c, s = torch.cos(angle) * zoom, torch.sin(angle) * zoom
        sx = 1 - 2 * fh.float()
        sy = 1 - 2 * fv.float()
        # output pixel -> source position (normalised coordinates, square images), then the flip
        theta = torch.stack([torch.stack([c * sx, s * sx, torch.zeros(n)], 1), torch.stack([-s * sy, c * sy, torch.zeros(n)], 1)], 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    if contrast is not None:
        mean = x.mean(dim=(2, 3), keepdim=True)
        x = ((x - mean) * contrast.view(n, 1, 1, 1) + mean).clamp(0, 255)
    return x


def split_at_boundary(model, boundary):
    """(frozen, tail) of model.features for our boundary layer (training/tail/base-layers.ts names)."""
    f = list(model.features)
    if boundary.endswith("_expand_relu"):  # e.g. block_13_expand_relu: the expand conv is frozen
        i = int(boundary.split("_")[1])
        block = f[i + 1]
        if block.use_res_connect:
            raise ValueError(f"boundary {boundary} is inside a residual block: not supported by the anchor")
        frozen = nn.Sequential(*f[: i + 1], block.conv[0])
        tail = nn.Sequential(*block.conv[1:], *f[i + 2 :])
    elif boundary.endswith("_add") or boundary.endswith("_project_BN"):
        i = int(boundary.split("_")[1]) if boundary.startswith("block_") else 0
        frozen = nn.Sequential(*f[: i + 2])
        tail = nn.Sequential(*f[i + 2 :])
    else:
        raise ValueError(f"boundary {boundary}: the anchor supports *_expand_relu, *_add and *_project_BN boundaries")
    return frozen, tail


class Head(nn.Module):
    """Dropout -> Dense logits on the pooled features: one logit for two classes (sigmoid), N otherwise (softmax)."""

    def __init__(self, channels, num_classes, dropout):
        super().__init__()
        self.units = 1 if num_classes == 2 else num_classes
        self.linear = nn.Linear(channels, self.units)
        nn.init.xavier_uniform_(self.linear.weight)  # Keras' glorot_uniform (torch.manual_seed seeds it)
        nn.init.zeros_(self.linear.bias)
        self.dropout = dropout

    def forward(self, pooled, training):
        x = F.dropout(pooled, self.dropout, training=training) if training and self.dropout > 0 else pooled
        return self.linear(x)

    def loss(self, logits, y):
        if self.units == 1:
            return F.binary_cross_entropy_with_logits(logits[:, 0], y.float())
        return F.cross_entropy(logits, y)

    def correct(self, logits, y):
        pred = (logits[:, 0] > 0).long() if self.units == 1 else logits.argmax(1)
        return int((pred == y).sum())


def batched(fn, x, batch):
    with torch.no_grad():
        return torch.cat([fn(x[i : i + batch]) for i in range(0, x.shape[0], batch)])


def main():
    cfg = json.load(open(sys.argv[1]))
    torch.set_num_threads(cfg["threads"])
    torch.manual_seed(cfg["seed"])
    gen = torch.Generator().manual_seed(cfg["seed"])
    split = json.load(open(cfg["split"]))
    S, B = cfg["imageSize"], cfg["batchSize"]
    t = {}

    t0 = time.perf_counter()
    xtr, ytr = load_images(split["train"], S, cfg["resize"], cfg["threads"])
    xva, yva = load_images(split["validation"], S, cfg["resize"], cfg["threads"])
    t["decodeSeconds"] = time.perf_counter() - t0
    log(f"decoded {len(ytr)} training and {len(yva)} validation images at {S} in {t['decodeSeconds']:.1f}s")

    # channels_last: oneDNN's fast layout for these convolutions (measured 4x on the frozen forward here).
    model = keras_mobilenet_v2(cfg["weights"], num_classes=1).eval().to(memory_format=CL)
    frozen, tail = split_at_boundary(model, cfg["boundary"])
    for p in frozen.parameters():
        p.requires_grad_(False)
    num_classes = len(split["classes"])
    channels = model.last_channel
    head = Head(channels, num_classes, cfg["dropout"])

    def pooled_of(boundary_act):
        return tail(boundary_act).mean(dim=(2, 3))

    # Validation: boundary activations and pooled features in one pass, once.
    t1 = time.perf_counter()
    va_boundary = batched(lambda x: frozen(to_input(x)), xva, B)
    va_pooled = batched(pooled_of, va_boundary, B)

    def evaluate(pooled):
        with torch.no_grad():
            return head.correct(head(pooled, False), yva) / len(yva)

    # Phase 1: head on pooled features (un-augmented: computed once; augmented: once per view set).
    opt = torch.optim.Adam(head.parameters(), lr=cfg["lr"], eps=1e-7)
    feature_sets = {}
    history = []
    for e in range(cfg["epochs"]):
        view = (e % cfg["frozenViews"] if cfg.get("frozenViews") else e) if cfg["augmentFrozen"] else -1
        feats = feature_sets.get(view)
        if feats is None:
            if view < 0:
                feats = batched(lambda x: pooled_of(frozen(to_input(x))), xtr, B)
            else:
                feats = batched(lambda x: pooled_of(frozen(augment(x, cfg, gen))), xtr, B)
            if view < 0 or cfg.get("frozenViews"):
                feature_sets[view] = feats
        order = torch.randperm(len(ytr), generator=gen)
        head.train()
        for i in range(0, len(order), B):
            idx = order[i : i + B]
            loss = head.loss(head(feats[idx], True), ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        history.append(evaluate(va_pooled))
    acc_frozen = evaluate(va_pooled)
    t["frozenSeconds"] = time.perf_counter() - t1
    log(f"phase 1: {cfg['epochs']} epochs in {t['frozenSeconds']:.1f}s, val acc {acc_frozen:.4f}")

    # Phase 2: the tail above the boundary, BatchNorm in inference mode (modules stay in eval()).
    t2 = time.perf_counter()
    acc_fine = None
    boundary_images = 0
    boundary_seconds = 0.0
    if cfg["fineTuneEpochs"] > 0:
        params = [p for p in tail.parameters()] + list(head.parameters())
        for p in params:
            p.requires_grad_(True)
        opt = torch.optim.Adam(params, lr=cfg["fineTuneLr"], eps=1e-7)
        steps = math.ceil(len(ytr) / B)
        total = steps * cfg["fineTuneEpochs"]
        step = 0
        for e in range(cfg["fineTuneEpochs"]):
            order = torch.randperm(len(ytr), generator=gen)
            for i in range(0, len(order), B):
                idx = order[i : i + B]
                tb = time.perf_counter()
                with torch.no_grad():
                    xb = frozen(augment(xtr[idx], cfg, gen))
                boundary_seconds += time.perf_counter() - tb
                boundary_images += len(idx)
                if cfg["fineTuneSchedule"] == "cosine":
                    for g in opt.param_groups:
                        g["lr"] = cfg["fineTuneLr"] * 0.5 * (1 + math.cos(math.pi * step / total))
                loss = head.loss(head(pooled_of(xb), True), ytr[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
            acc_fine = evaluate(batched(pooled_of, va_boundary, B))
            history.append(acc_fine)
            log(f"phase 2 epoch {e + 1}/{cfg['fineTuneEpochs']}: val acc {acc_fine:.4f} ({time.perf_counter() - t2:.1f}s)")
    t["fineTuneSeconds"] = time.perf_counter() - t2
    t["totalSeconds"] = time.perf_counter() - T0
    print(
        json.dumps(
            {
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "train": len(ytr),
                "validation": len(yva),
                "valAccuracyFrozen": acc_frozen,
                "valAccuracyFineTuned": acc_fine,
                "history": history,
                "boundaryImagesPerSecond": boundary_images / boundary_seconds if boundary_seconds else None,
                "peakRssMiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "malloc": {k: os.environ.get(k) for k in MALLOC_ENV},
                "ompWaitPolicy": os.environ.get("OMP_WAIT_POLICY", "default"),
                **t,
            }
        )
    )


if __name__ == "__main__":
    main()
