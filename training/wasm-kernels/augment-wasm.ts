// The augmentation's per-pixel loops (training/augment.ts) as WebAssembly on a memory of its own.
// Every phase-2 epoch augments each training image once more (2,620 views in a default run). The JS
// rotation took ~2.5 ms of a worker's ~14 ms per view; this takes ~1.5 ms (the source is widened to
// float64 once per view, not at each of its ~4 reads); the contrast pass ~2 ms in JS. The
// arithmetic is the JS loops', op for op in float64 (IEEE in both), so the pixels are the same bits
// (test/augment.test.ts compares both with the JS loops and the plain per-pixel reference, on real
// photos and on random draws).
import type { AugmentDraw } from '../augment.js';
import { c32, funcBody, get, I32, memarg, moduleOnce, name, op, section, set, tee, uleb, vec, whileBelow } from './wasm-assembler.js';

const F64 = 0x7c;
const f64 = {
  const: (v: number) => [0x44, ...new Uint8Array(new Float64Array([v]).buffer)],
  load: (offset = 0) => [0x2b, 0x03, ...uleb(offset)],
  store: (offset = 0) => [0x39, 0x03, ...uleb(offset)],
  add: 0xa0,
  sub: 0xa1,
  mul: 0xa2,
  floor: 0x9c,
  fromI32: 0xb7, // f64.convert_i32_s
  fromU32: 0xb8, // f64.convert_i32_u
  fromF32: 0xbb, // f64.promote_f32
  div: 0xa3,
  min: 0xa4,
  max: 0xa5,
};
const i32 = {
  load8u: (offset: number) => [0x2d, 0x00, ...uleb(offset)],
  fromF64: 0xaa, // i32.trunc_f64_s (the value is already an integer)
  sub: 0x6b,
  mul: 0x6c,
  remS: 0x6f,
  or: 0x72,
  ltS: 0x48,
  geS: 0x4e,
};
const f32StoreDemoted = (offset: number) => [0xb6, op.f32Store, 0x02, ...uleb(offset)];
const ifThen = (cond: number[], body: number[]) => [...cond, 0x04, op.void, ...body, op.end];

// reflect(i, n): the index i folded into [0, n) as Keras' reflect fill (augment.ts reflect()).
function reflectFn(): number[] {
  const [i, n, period, k] = [0, 1, 2, 3];
  const ret = (v: number[]) => [...v, 0x0f];
  const below = (v: number[]) => [...v, ...get(n), 0x49]; // i32.lt_u: 0 <= v < n
  const code = [
    // One fold covers every index within a width of the image (rotations): no remainder.
    ...ifThen(below(get(i)), ret(get(i))),
    ...ifThen(below([...get(i), ...get(n), op.i32Add]), ret([...c32(-1), ...get(i), i32.sub])),
    ...ifThen(below([...get(i), ...get(n), i32.sub]), ret([...get(n), ...get(n), op.i32Add, ...get(i), i32.sub, ...c32(1), i32.sub])),
    ...[...get(n), ...get(n), op.i32Add, ...set(period)],
    ...[...get(i), ...get(period), i32.remS, ...set(k)],
    ...ifThen([...get(k), ...c32(0), i32.ltS], [...get(k), ...get(period), op.i32Add, ...set(k)]),
    // k < n ? k : period - k - 1
    ...[...get(k), ...get(period), ...get(k), i32.sub, ...c32(1), i32.sub, ...get(k), ...get(n), i32.ltS, op.select],
    op.end,
  ];
  return funcBody([[2, I32]], code);
}

// resample(src, out, tables, w, h, cx, cy, sin, cos, flipH, flipV): the body of augment.ts resample()
// for every output pixel; tables holds cos*dx then -sin*dx (float64, w each).
function resampleFn(): number[] {
  // params
  const [src, out, tables, w, h, cx, cy, sin, cos, flipH, flipV] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
  // i32 locals
  const [y, x, px64, x0, x1, y0, y1, a, b, c, d, tab] = [11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22];
  // f64 locals
  const [sinDy, cosDy, sx, sy, x0f, y0f, fx, fy, gx, gy, wa, wb, wc, wd, wm1, hm1] = [
    23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38,
  ];
  const reflect = (v: number, n: number) => [...get(v), ...get(n), 0x10, 0x00, ...set(v)];
  const channel = (ch: number) => [
    ...get(out),
    ...[...get(a), ...f64.load(8 * ch), ...get(wa), f64.mul],
    ...[...get(b), ...f64.load(8 * ch), ...get(wb), f64.mul, f64.add],
    ...[...get(c), ...f64.load(8 * ch), ...get(wc), f64.mul, f64.add],
    ...[...get(d), ...f64.load(8 * ch), ...get(wd), f64.mul, f64.add],
    ...f32StoreDemoted(4 * ch),
  ];
  const corner = (yi: number, xi: number, into: number) => [
    ...[...get(yi), ...get(w), i32.mul, ...get(xi), op.i32Add, ...c32(24), i32.mul, ...get(px64), op.i32Add, ...set(into)],
  ];
  const pixel = [
    // sx = cosDx[x] + sinDy + cx; sy = nsinDx[x] + cosDy + cy
    ...[...get(tab), ...f64.load(0), ...get(sinDy), f64.add, ...get(cx), f64.add, ...set(sx)],
    ...[...get(tab), ...get(w), ...c32(3), op.i32Shl, op.i32Add, ...f64.load(0), ...get(cosDy), f64.add, ...get(cy), f64.add, ...set(sy)],
    ...[...get(wm1), ...get(sx), f64.sub, ...get(sx), ...get(flipH), op.select, ...set(sx)],
    ...[...get(hm1), ...get(sy), f64.sub, ...get(sy), ...get(flipV), op.select, ...set(sy)],
    ...[...get(sx), f64.floor, ...tee(x0f), i32.fromF64, ...tee(x0), ...c32(1), op.i32Add, ...set(x1)],
    ...[...get(sy), f64.floor, ...tee(y0f), i32.fromF64, ...tee(y0), ...c32(1), op.i32Add, ...set(y1)],
    ...[...get(sx), ...get(x0f), f64.sub, ...set(fx)],
    ...[...get(sy), ...get(y0f), f64.sub, ...set(fy)],
    ...ifThen([...get(x0), ...c32(0), i32.ltS, ...get(x1), ...get(w), i32.geS, i32.or], [...reflect(x0, w), ...reflect(x1, w)]),
    ...ifThen([...get(y0), ...c32(0), i32.ltS, ...get(y1), ...get(h), i32.geS, i32.or], [...reflect(y0, h), ...reflect(y1, h)]),
    ...corner(y0, x0, a),
    ...corner(y0, x1, b),
    ...corner(y1, x0, c),
    ...corner(y1, x1, d),
    ...[...f64.const(1), ...get(fx), f64.sub, ...set(gx)],
    ...[...f64.const(1), ...get(fy), f64.sub, ...set(gy)],
    ...[...get(gx), ...get(gy), f64.mul, ...set(wa)],
    ...[...get(fx), ...get(gy), f64.mul, ...set(wb)],
    ...[...get(gx), ...get(fy), f64.mul, ...set(wc)],
    ...[...get(fx), ...get(fy), f64.mul, ...set(wd)],
    ...channel(0),
    ...channel(1),
    ...channel(2),
    ...[...get(out), ...c32(12), op.i32Add, ...set(out)],
    ...[...get(tab), ...c32(8), op.i32Add, ...set(tab)],
  ];
  // for (counter = 0; counter < limit; counter++) body
  const upTo = (counter: number, limit: number, body: number[]) => [...c32(0), ...set(counter), ...whileBelow(counter, [], limit, body, 1)];
  const code = [
    // The source as float64 after the output (each value is read by up to 4 output pixels): px64 = out + 12 w h.
    ...[...get(out), ...get(w), ...get(h), i32.mul, ...c32(12), i32.mul, op.i32Add, ...set(px64)],
    ...[...get(w), ...get(h), i32.mul, ...c32(3), i32.mul, ...set(a)],
    ...upTo(x, a, [
      ...[...get(px64), ...get(x), ...c32(3), op.i32Shl, op.i32Add],
      ...[...get(src), ...get(x), op.i32Add, ...i32.load8u(0), f64.fromU32],
      ...f64.store(0),
    ]),
    ...[...get(w), ...c32(1), i32.sub, f64.fromI32, ...set(wm1)],
    ...[...get(h), ...c32(1), i32.sub, f64.fromI32, ...set(hm1)],
    ...upTo(y, h, [
      // dy = y - cy; sinDy = sin * dy; cosDy = cos * dy
      ...[...get(sin), ...get(y), f64.fromI32, ...get(cy), f64.sub, f64.mul, ...set(sinDy)],
      ...[...get(cos), ...get(y), f64.fromI32, ...get(cy), f64.sub, f64.mul, ...set(cosDy)],
      ...[...get(tables), ...set(tab)],
      ...upTo(x, w, pixel),
    ]),
    op.end,
  ];
  return funcBody(
    [
      [12, I32],
      [16, F64],
    ],
    code,
  );
}

// contrast(px, n, factor): augment.ts adjustContrast() over n RGB float32 pixels at px: each
// channel's mean (summed in order in float64), then min(255, max(0, (v - mean) * factor + mean)).
function contrastFn(): number[] {
  const [px, n, factor, p, end, s0, s1, s2, nf] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
  const load = (offset: number) => [op.f32Load, memarg[0], ...uleb(offset), f64.fromF32];
  const sum = (acc: number, ch: number) => [...get(acc), ...get(p), ...load(4 * ch), f64.add, ...set(acc)];
  const adjust = (mean: number, ch: number) => [
    ...get(p),
    ...f64.const(255),
    ...f64.const(0),
    ...[...get(p), ...load(4 * ch), ...get(mean), f64.sub, ...get(factor), f64.mul, ...get(mean), f64.add],
    f64.max,
    f64.min,
    ...f32StoreDemoted(4 * ch),
  ];
  const code = [
    ...[...get(px), ...get(n), ...c32(12), i32.mul, op.i32Add, ...set(end)],
    ...[...get(px), ...set(p)],
    ...whileBelow(p, [], end, [...sum(s0, 0), ...sum(s1, 1), ...sum(s2, 2)], 12),
    ...[...get(n), f64.fromU32, ...set(nf)],
    ...[s0, s1, s2].flatMap((acc) => [...get(acc), ...get(nf), f64.div, ...set(acc)]),
    ...[...get(px), ...set(p)],
    ...whileBelow(p, [], end, [...adjust(s0, 0), ...adjust(s1, 1), ...adjust(s2, 2)], 12),
    op.end,
  ];
  return funcBody(
    [
      [2, I32],
      [4, F64],
    ],
    code,
  );
}

function moduleBytes(): Uint8Array {
  const reflectType = [0x60, ...vec([[I32], [I32]]), ...vec([[I32]])];
  const resampleType = [0x60, ...vec([[I32], [I32], [I32], [I32], [I32], [F64], [F64], [F64], [F64], [I32], [I32]]), 0x00];
  const contrastType = [0x60, ...vec([[I32], [I32], [F64]]), 0x00];
  return new Uint8Array([
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(1, vec([reflectType, resampleType, contrastType])),
    ...section(3, vec([[0x00], [0x01], [0x02]])),
    ...section(5, vec([[0x00, 0x01]])),
    ...section(
      7,
      vec([
        [...name('memory'), 0x02, 0x00],
        [...name('resample'), 0x00, 0x01],
        [...name('contrast'), 0x00, 0x02],
      ]),
    ),
    ...section(10, [...uleb(3), ...reflectFn(), ...resampleFn(), ...contrastFn()]),
  ]);
}

/** What the resampling reads of a draw (augment.ts AugmentDraw; contrast is a pass of its own). */
export type ResampleDraw = Omit<AugmentDraw, 'contrast'>;

export interface WasmAugmentation {
  /** augment.ts resample(): rotation/zoom (and flips) of data (w x h RGB bytes) into out. */
  resample(data: Uint8Array, w: number, h: number, draw: ResampleDraw, out: Float32Array): void;
  /** augment.ts adjustContrast() on px (RGB float32), in place. */
  contrast(px: Float32Array, factor: number): void;
}

/** This thread's augmentation loops in WebAssembly, or undefined where they cannot be built. */
export const wasmAugmentation = moduleOnce<WasmAugmentation>(moduleBytes, (exports) => {
  const e = exports as {
    memory: WebAssembly.Memory;
    resample(...args: number[]): void;
    contrast(px: number, n: number, factor: number): void;
  };
  const reserve = (bytes: number) => {
    const have = e.memory.buffer.byteLength;
    if (bytes > have) e.memory.grow(Math.ceil((bytes - have) / 65536));
    return e.memory.buffer;
  };
  return {
    resample(data, w, h, draw, out) {
      const cx = (w - 1) / 2;
      const cy = (h - 1) / 2;
      const cos = Math.cos(draw.angle) * draw.zoom;
      const sin = Math.sin(draw.angle) * draw.zoom;
      const nsin = -sin;
      // Memory: the source bytes, the two float64 tables, the float32 output, the source as float64.
      const tablesAt = Math.ceil((w * h * 3) / 8) * 8;
      const outAt = tablesAt + 16 * w;
      const buf = reserve(outAt + 12 * w * h + 24 * w * h);
      new Uint8Array(buf, 0, w * h * 3).set(data.subarray(0, w * h * 3));
      const cosDx = new Float64Array(buf, tablesAt, w);
      const nsinDx = new Float64Array(buf, tablesAt + 8 * w, w);
      for (let x = 0; x < w; x++) {
        const dx = x - cx;
        cosDx[x] = cos * dx;
        nsinDx[x] = nsin * dx;
      }
      e.resample(0, outAt, tablesAt, w, h, cx, cy, sin, cos, draw.flipH ? 1 : 0, draw.flipV ? 1 : 0);
      out.set(new Float32Array(buf, outAt, w * h * 3));
    },
    contrast(px, factor) {
      const view = new Float32Array(reserve(px.byteLength), 0, px.length);
      view.set(px);
      e.contrast(0, px.length / 3, factor);
      px.set(view);
    },
  };
});
