import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { RgbImage } from '../core/image.js';
import { sharp } from '../core/sharp.js';
import { createRng, deriveSeed } from './rng.js';

/**
 * A seeded generator of labelled, photo-like demo images: one shape class per folder (circles,
 * squares, triangles, ...) drawn with anti-aliasing over gradient + noise backgrounds with
 * clutter, at random positions, scales, rotations and colours, sometimes occluded, with sensor
 * noise and JPEG artefacts. Learnable by a fine-tuned MobileNetV2, but not by a colour histogram.
 * Everything derives from the seed: the same options give the same bytes.
 */

export const DEMO_CLASSES = ['circles', 'squares', 'triangles', 'stars', 'crosses', 'crescents'] as const;
export type DemoShape = (typeof DEMO_CLASSES)[number];

export interface DemoDataOptions {
  /** Number of classes, 2..6 (the first N of DEMO_CLASSES). */
  classes?: number;
  /** Images per class. */
  perClass?: number;
  /** Width and height of each image in pixels. */
  size?: number;
  seed?: number;
  /** Replace this generator's own files in an existing folder instead of refusing a non-empty one. */
  force?: boolean;
}

export interface DemoImage {
  /** `<class>/<class>_0001.jpg`, always with forward slashes. */
  relPath: string;
  className: DemoShape;
  bytes: Buffer;
}

export interface DemoDataResult {
  root: string;
  classes: DemoShape[];
  files: string[];
  counts: Record<string, number>;
}

const LIMITS = { classes: [2, DEMO_CLASSES.length], perClass: [1, 100_000], size: [16, 2048] } as const;

export function resolveDemoOptions(opts: DemoDataOptions = {}): Required<Omit<DemoDataOptions, 'force'>> {
  const r = { classes: opts.classes ?? 2, perClass: opts.perClass ?? 60, size: opts.size ?? 192, seed: opts.seed ?? 42 };
  for (const key of ['classes', 'perClass', 'size'] as const) {
    const [lo, hi] = LIMITS[key];
    if (!Number.isInteger(r[key]) || r[key] < lo || r[key] > hi)
      throw new Error(`demo-data: ${key} must be an integer in [${lo}, ${hi}], got ${r[key]}`);
  }
  if (!Number.isInteger(r.seed)) throw new Error(`demo-data: seed must be an integer, got ${r.seed}`);
  return r;
}

// ---------------------------------------------------------------------------------------------
// Drawing primitives on a float RGB canvas (HWC, 0..255).

interface Canvas {
  data: Float32Array;
  size: number;
}

type Rgb = [number, number, number];
type Vec = [number, number];

function hsv(h: number, s: number, v: number): Rgb {
  const i = Math.floor(h * 6);
  const f = h * 6 - i;
  const p = v * (1 - s);
  const q = v * (1 - f * s);
  const t = v * (1 - (1 - f) * s);
  const [r, g, b] = [
    [v, t, p],
    [q, v, p],
    [p, v, t],
    [p, q, v],
    [t, p, v],
    [v, p, q],
  ][((i % 6) + 6) % 6];
  return [r * 255, g * 255, b * 255];
}

const luma = (c: Rgb) => 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2];

/**
 * Blends `colour(x, y)` into the canvas where the signed distance `sdf(x, y)` (pixels, negative
 * inside) is below zero, with one pixel of anti-aliasing (or `soft` pixels of feathering).
 */
function fillShape(
  c: Canvas,
  bbox: [number, number, number, number],
  sdf: (x: number, y: number) => number,
  colour: (x: number, y: number) => Rgb,
  alpha = 1,
  soft = 1,
): void {
  const x0 = Math.max(0, Math.floor(bbox[0]));
  const y0 = Math.max(0, Math.floor(bbox[1]));
  const x1 = Math.min(c.size - 1, Math.ceil(bbox[2]));
  const y1 = Math.min(c.size - 1, Math.ceil(bbox[3]));
  for (let y = y0; y <= y1; y++) {
    for (let x = x0; x <= x1; x++) {
      const d = sdf(x + 0.5, y + 0.5);
      const cover = Math.min(1, Math.max(0, 0.5 - d / soft)) * alpha;
      if (cover <= 0) continue;
      const col = colour(x + 0.5, y + 0.5);
      const i = (y * c.size + x) * 3;
      c.data[i] += (col[0] - c.data[i]) * cover;
      c.data[i + 1] += (col[1] - c.data[i + 1]) * cover;
      c.data[i + 2] += (col[2] - c.data[i + 2]) * cover;
    }
  }
}

/** Signed distance to a closed polygon (Inigo Quilez' sdPolygon). */
function polygonSdf(v: Vec[], px: number, py: number): number {
  let d = (px - v[0][0]) ** 2 + (py - v[0][1]) ** 2;
  let s = 1;
  for (let i = 0, j = v.length - 1; i < v.length; j = i, i++) {
    const ex = v[j][0] - v[i][0];
    const ey = v[j][1] - v[i][1];
    const wx = px - v[i][0];
    const wy = py - v[i][1];
    const t = Math.min(1, Math.max(0, (wx * ex + wy * ey) / (ex * ex + ey * ey)));
    const bx = wx - ex * t;
    const by = wy - ey * t;
    d = Math.min(d, bx * bx + by * by);
    const c1 = py >= v[i][1];
    const c2 = py < v[j][1];
    const c3 = ex * wy > ey * wx;
    if ((c1 && c2 && c3) || (!c1 && !c2 && !c3)) s = -s;
  }
  return s * Math.sqrt(d);
}

/** A straight stroke with round caps from (ax, ay) to (bx, by), half-width w. */
function stroke(c: Canvas, ax: number, ay: number, bx: number, by: number, w: number, col: Rgb, alpha = 1): void {
  const ex = bx - ax;
  const ey = by - ay;
  const ee = ex * ex + ey * ey || 1;
  const sdf = (px: number, py: number) => {
    const t = Math.min(1, Math.max(0, ((px - ax) * ex + (py - ay) * ey) / ee));
    return Math.hypot(px - ax - ex * t, py - ay - ey * t) - w;
  };
  const pad = w + 2;
  fillShape(c, [Math.min(ax, bx) - pad, Math.min(ay, by) - pad, Math.max(ax, bx) + pad, Math.max(ay, by) + pad], sdf, () => col, alpha);
}

/** Unit-radius outline of each polygonal class, before rotation and scaling. */
function unitPolygon(shape: DemoShape): Vec[] {
  const ring = (n: number, radius: (k: number) => number, phase: number): Vec[] =>
    Array.from({ length: n }, (_, k) => {
      const a = phase + (2 * Math.PI * k) / n;
      return [radius(k) * Math.cos(a), radius(k) * Math.sin(a)];
    });
  switch (shape) {
    case 'squares':
      return ring(4, () => 0.92, Math.PI / 4);
    case 'triangles':
      return ring(3, () => 1.05, -Math.PI / 2);
    case 'stars':
      return ring(10, (k) => (k % 2 ? 0.45 : 1.05), -Math.PI / 2);
    case 'crosses': {
      const a = 0.32;
      const b = 0.95;
      return [
        [-a, -b],
        [a, -b],
        [a, -a],
        [b, -a],
        [b, a],
        [a, a],
        [a, b],
        [-a, b],
        [-a, a],
        [-b, a],
        [-b, -a],
        [-a, -a],
      ];
    }
    default:
      throw new Error(`not a polygon: ${shape}`);
  }
}

/** Signed distance (pixels) of the shape centred at (cx, cy) with radius r, rotated by angle. */
function shapeSdf(shape: DemoShape, cx: number, cy: number, r: number, angle: number): (x: number, y: number) => number {
  const cos = Math.cos(angle);
  const sin = Math.sin(angle);
  if (shape === 'circles') return (x, y) => Math.hypot(x - cx, y - cy) - r * 0.9;
  if (shape === 'crescents') {
    const ox = cx + r * 0.45 * cos;
    const oy = cy + r * 0.45 * sin;
    return (x, y) => Math.max(Math.hypot(x - cx, y - cy) - r * 0.95, r * 0.78 - Math.hypot(x - ox, y - oy));
  }
  const poly = unitPolygon(shape).map(([u, v]): Vec => [cx + r * (u * cos - v * sin), cy + r * (u * sin + v * cos)]);
  return (x, y) => polygonSdf(poly, x, y);
}

// ---------------------------------------------------------------------------------------------
// One image.

function background(c: Canvas, rng: () => number): Rgb {
  const { size, data } = c;
  const h = rng();
  const c0 = hsv(h, 0.15 + 0.6 * rng(), 0.25 + 0.7 * rng());
  const c1 = hsv((h + (rng() - 0.5) * 0.4 + 1) % 1, 0.1 + 0.6 * rng(), 0.2 + 0.75 * rng());
  const a = rng() * 2 * Math.PI;
  const gx = Math.cos(a) / size;
  const gy = Math.sin(a) / size;
  // low-frequency value noise: a coarse random grid, bilinearly interpolated
  const g = 5;
  const grid = Array.from({ length: (g + 1) * (g + 1) }, () => rng() * 2 - 1);
  const amp = 10 + 30 * rng();
  // faint periodic texture (fabric, tiles) on some backgrounds
  const texAmp = rng() < 0.4 ? 6 + 12 * rng() : 0;
  const texF = (2 * Math.PI * (3 + 10 * rng())) / size;
  const texA = rng() * Math.PI;
  const tcx = Math.cos(texA) * texF;
  const tsy = Math.sin(texA) * texF;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const t = Math.min(1, Math.max(0, 0.5 + (x - size / 2) * gx + (y - size / 2) * gy));
      const fx = (x / size) * g;
      const fy = (y / size) * g;
      const ix = Math.floor(fx);
      const iy = Math.floor(fy);
      const ux = fx - ix;
      const uy = fy - iy;
      const n00 = grid[iy * (g + 1) + ix];
      const n10 = grid[iy * (g + 1) + ix + 1];
      const n01 = grid[(iy + 1) * (g + 1) + ix];
      const n11 = grid[(iy + 1) * (g + 1) + ix + 1];
      const n = (n00 * (1 - ux) + n10 * ux) * (1 - uy) + (n01 * (1 - ux) + n11 * ux) * uy;
      const tex = texAmp ? texAmp * Math.sin(x * tcx + y * tsy) : 0;
      const shade = amp * n + tex;
      const i = (y * size + x) * 3;
      data[i] = c0[0] + (c1[0] - c0[0]) * t + shade;
      data[i + 1] = c0[1] + (c1[1] - c0[1]) * t + shade;
      data[i + 2] = c0[2] + (c1[2] - c0[2]) * t + shade;
    }
  }
  return [(c0[0] + c1[0]) / 2, (c0[1] + c1[1]) / 2, (c0[2] + c1[2]) / 2];
}

/** Shape-neutral clutter: strokes (twigs, cables) and soft out-of-focus blobs. */
function clutter(c: Canvas, rng: () => number): void {
  const { size } = c;
  const strokes = Math.floor(rng() * 6);
  for (let k = 0; k < strokes; k++) {
    const ax = rng() * size;
    const ay = rng() * size;
    const len = size * (0.2 + 0.6 * rng());
    const a = rng() * 2 * Math.PI;
    const bx = ax + Math.cos(a) * len;
    const by = ay + Math.sin(a) * len;
    const w = size * (0.005 + 0.02 * rng());
    const col = hsv(rng(), rng() * 0.7, 0.15 + 0.8 * rng());
    stroke(c, ax, ay, bx, by, w, col, 0.5 + 0.5 * rng());
  }
  const blobs = Math.floor(rng() * 4);
  for (let k = 0; k < blobs; k++) {
    const cx = rng() * size;
    const cy = rng() * size;
    const r = size * (0.04 + 0.1 * rng());
    const soft = r * (0.6 + 0.6 * rng());
    const col = hsv(rng(), rng() * 0.6, 0.3 + 0.7 * rng());
    const ext = r + soft;
    fillShape(
      c,
      [cx - ext, cy - ext, cx + ext, cy + ext],
      (x, y) => Math.hypot(x - cx, y - cy) - r,
      () => col,
      0.15 + 0.3 * rng(),
      soft,
    );
  }
}

function objectColour(bg: Rgb, rng: () => number): Rgb {
  for (let attempt = 0; ; attempt++) {
    const col = hsv(rng(), 0.35 + 0.65 * rng(), 0.3 + 0.7 * rng());
    // keep enough contrast with the background so the object stays visible (mostly)
    if (Math.abs(luma(col) - luma(bg)) > 45 || attempt >= 8) return col;
  }
}

function drawObject(c: Canvas, shape: DemoShape, bg: Rgb, scale: number, rng: () => number): [number, number, number] {
  const { size } = c;
  const r = size * scale;
  const margin = r * 0.55;
  const cx = margin + rng() * (size - 2 * margin);
  const cy = margin + rng() * (size - 2 * margin);
  const angle = rng() * 2 * Math.PI;
  const sdf = shapeSdf(shape, cx, cy, r, angle);
  const bbox: [number, number, number, number] = [cx - r * 1.15, cy - r * 1.15, cx + r * 1.15, cy + r * 1.15];
  // soft drop shadow
  const sx = (rng() - 0.5) * r * 0.3;
  const sy = r * (0.05 + 0.15 * rng());
  const soft = 2 + r * 0.15;
  fillShape(
    c,
    [bbox[0] + sx - soft, bbox[1] + sy - soft, bbox[2] + sx + soft, bbox[3] + sy + soft],
    (x, y) => sdf(x - sx, y - sy),
    () => [0, 0, 0],
    0.15 + 0.25 * rng(),
    soft,
  );
  const base = objectColour(bg, rng);
  // lit from one side; some objects striped or two-toned (painted, printed)
  const la = rng() * 2 * Math.PI;
  const lx = Math.cos(la) / r;
  const ly = Math.sin(la) / r;
  const light = 0.1 + 0.25 * rng();
  const pattern = rng();
  const second = hsv(rng(), 0.3 + 0.7 * rng(), 0.3 + 0.7 * rng());
  const freq = (2 * Math.PI) / (r * (0.25 + 0.3 * rng()));
  const pa = rng() * Math.PI;
  const pcos = Math.cos(pa) * freq;
  const psin = Math.sin(pa) * freq;
  const colour = (x: number, y: number): Rgb => {
    let col = base;
    if (pattern < 0.25 && Math.sin((x - cx) * pcos + (y - cy) * psin) > 0) col = second;
    const f = 1 + light * ((x - cx) * lx + (y - cy) * ly);
    return [col[0] * f, col[1] * f, col[2] * f];
  };
  fillShape(c, bbox, sdf, colour, 0.85 + 0.15 * rng());
  return [cx, cy, r];
}

/** Something in front of the object: a branch, a post, a leaf. */
function occlude(c: Canvas, cx: number, cy: number, r: number, rng: () => number): void {
  const a = rng() * Math.PI;
  const off = (rng() - 0.5) * r * 1.4;
  const px = cx + Math.cos(a + Math.PI / 2) * off;
  const py = cy + Math.sin(a + Math.PI / 2) * off;
  const len = r * (1.2 + 2 * rng());
  const ax = px - Math.cos(a) * len;
  const ay = py - Math.sin(a) * len;
  const bx = px + Math.cos(a) * len;
  const by = py + Math.sin(a) * len;
  const w = r * (0.08 + 0.2 * rng());
  const col = hsv(rng(), rng() * 0.5, 0.1 + 0.6 * rng());
  stroke(c, ax, ay, bx, by, w, col);
}

/** Global exposure/contrast jitter and Gaussian sensor noise, then quantise to 8-bit RGB. */
function finish(c: Canvas, rng: () => number): Uint8Array {
  const out = new Uint8ClampedArray(c.data.length); // clamps and rounds on store
  const gain = 0.8 + 0.4 * rng();
  const bias = (rng() - 0.5) * 30;
  const sigma = 2 + 10 * rng();
  // Box-Muller per pixel is the slowest step: draw a table of normals once, index it with an inline LCG
  const table = new Float32Array(4096);
  for (let k = 0; k < table.length; k += 2) {
    const m = Math.sqrt(-2 * Math.log(1 - rng()));
    const a = 2 * Math.PI * rng();
    table[k] = m * Math.cos(a);
    table[k + 1] = m * Math.sin(a);
  }
  let state = Math.floor(rng() * 2 ** 32) >>> 0;
  for (let i = 0; i < out.length; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    const v = (c.data[i] - 128) * gain + 128 + bias + sigma * table[state >>> 20];
    out[i] = v;
  }
  return new Uint8Array(out.buffer);
}

/** Renders one demo image of `shape` from its own RNG stream: pure, no I/O. */
export function renderDemoImage(shape: DemoShape, size: number, seed: number): RgbImage {
  const rng = createRng(seed);
  const c: Canvas = { data: new Float32Array(size * size * 3), size };
  const bg = background(c, rng);
  clutter(c, rng);
  const count = rng() < 0.2 ? 2 : 1;
  for (let k = 0; k < count; k++) {
    const scale = count === 1 ? 0.16 + 0.2 * rng() : 0.12 + 0.1 * rng();
    const [cx, cy, r] = drawObject(c, shape, bg, scale, rng);
    if (rng() < 0.3) occlude(c, cx, cy, r, rng);
  }
  return { data: finish(c, rng), width: size, height: size };
}

/** Every image of the demo set in folder order, JPEG-encoded: write them to disk or upload them. */
export async function* demoImages(opts: DemoDataOptions = {}): AsyncGenerator<DemoImage> {
  const { classes, perClass, size, seed } = resolveDemoOptions(opts);
  const names = DEMO_CLASSES.slice(0, classes);
  // sharp encodes on its own threads: keep a few encodes in flight while the next images render
  const pending: Promise<DemoImage>[] = [];
  const width = Math.max(4, String(perClass).length);
  for (const name of names) {
    for (let k = 0; k < perClass; k++) {
      // per-image streams: image k is the same whatever perClass is
      const imgSeed = deriveSeed(seed, `demo:${name}:${k}`);
      const img = renderDemoImage(name, size, imgSeed);
      const quality = 78 + (imgSeed % 17);
      const relPath = `${name}/${name}_${String(k + 1).padStart(width, '0')}.jpg`;
      pending.push(
        sharp(img.data, { raw: { width: size, height: size, channels: 3 } })
          .jpeg({ quality, chromaSubsampling: '4:2:0' })
          .toBuffer()
          .then((bytes) => ({ relPath, className: name, bytes })),
      );
      if (pending.length >= 4) yield await pending.shift()!;
    }
  }
  while (pending.length) yield await pending.shift()!;
}

/**
 * Writes the demo dataset as `<outDir>/<class>/<class>_NNNN.jpg` (the layout `listDataset`
 * reads). Refuses a non-empty folder unless `force`, which replaces only this generator's files
 * (in every demo class folder, so a smaller --classes leaves no stale class behind).
 */
export async function generateDemoDataset(outDir: string, opts: DemoDataOptions = {}): Promise<DemoDataResult> {
  const resolved = resolveDemoOptions(opts);
  const root = path.resolve(outDir);
  const names = DEMO_CLASSES.slice(0, resolved.classes);
  const existing = await readdir(root).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return [] as string[];
    throw e;
  });
  if (existing.length && !opts.force) {
    throw new Error(`demo-data: ${root} is not empty; choose an empty folder, or force (--force) to replace the demo images in it`);
  }
  if (opts.force) await removeOwnFiles(root);
  for (const name of names) await mkdir(path.join(root, name), { recursive: true });
  const files: string[] = [];
  const counts: Record<string, number> = Object.fromEntries(names.map((n) => [n, 0]));
  for await (const img of demoImages(resolved)) {
    await writeFile(path.join(root, img.relPath), img.bytes);
    files.push(img.relPath);
    counts[img.className]++;
  }
  return { root, classes: [...names], files, counts };
}

/** Deletes `<class>/<class>_NNNN.jpg` files of every demo class, and class folders left empty. */
async function removeOwnFiles(root: string): Promise<void> {
  for (const name of DEMO_CLASSES) {
    const dir = path.join(root, name);
    const entries = await readdir(dir).catch(() => undefined);
    if (!entries) continue;
    const own = new RegExp(`^${name}_\\d+\\.jpg$`);
    for (const f of entries) if (own.test(f)) await rm(path.join(dir, f));
    if (!(await readdir(dir)).length) await rm(dir, { recursive: true });
  }
}
