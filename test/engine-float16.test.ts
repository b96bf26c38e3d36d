// The ort engine's float16 outputs (a Cast in its graph, core/engine/ort-engine.ts) are the same bits
// as our own float32 -> float16 conversion (training/workers/boundary-float16.ts), so the boundary
// cache of an ort run does not depend on which side converts: ties, subnormals, overflow, and real
// activations.
import { describe, expect, it } from 'vitest';
import { initBackend } from '../core/backend.js';
import { createEngine } from '../core/engine/engine.js';
import { ortEngineFromOnnx, withFloat16Outputs } from '../core/engine/ort-engine.js';
import { onnxModelType } from '../core/export/onnx.js';
import { buildMobileNetV2 } from '../core/mobilenet-v2.js';
import { toFloat16 } from '../training/workers/boundary-float16.js';
import { randomizeBatchNorm } from './helpers/fast-forward-fixtures.js';

const FLOAT = 1;

/** An ONNX graph y = Identity(x) over [batch, k] float32. */
function identityOnnx(k: number): Uint8Array {
  const info = (name: string) => ({
    name,
    type: { tensor_type: { elem_type: FLOAT, shape: { dim: [{ dim_param: 'batch' }, { dim_value: k }] } } },
  });
  const type = onnxModelType();
  const model = {
    ir_version: 7,
    opset_import: [{ domain: '', version: 13 }],
    graph: {
      name: 'identity',
      node: [{ name: 'y', op_type: 'Identity', input: ['x'], output: ['y'] }],
      input: [info('x')],
      output: [info('y')],
    },
  };
  return type.encode(type.fromObject(model)).finish();
}

function f32(bits: number[]): number[] {
  const u = new Uint32Array(bits);
  return Array.from(new Float32Array(u.buffer));
}

describe('ort float16 outputs', () => {
  it('round like toFloat16 on ties, subnormals, overflow, infinities and a sweep of float32 bit patterns', async () => {
    const edge = [
      0,
      -0,
      1,
      -1,
      6,
      65504,
      65519.99,
      65520,
      1e6,
      -1e6,
      Number.POSITIVE_INFINITY,
      Number.NEGATIVE_INFINITY,
      2 ** -14,
      2 ** -15,
      2 ** -24,
      2 ** -25,
      2 ** -26,
      3 * 2 ** -25,
      1e-8,
      -1e-8,
      1e-30,
      // exactly halfway between two halves (round to even both ways) and one ulp either side
      ...f32([0x3f801000, 0x3f803000, 0x3f800fff, 0x3f801001, 0x3f803001, 0x40c01000, 0x387fc000, 0x38002000]),
    ];
    const sweep: number[] = [];
    // Every 4099th float32 bit pattern of [0, 2^31) (finite, non-negative, NaN-free below 0x7f800000) and their negatives.
    for (let b = 0; b < 0x7f800000; b += 4099 * 64) sweep.push(...f32([b, (b | 0x80000000) >>> 0]));
    const values = Float32Array.from([...edge, ...sweep]);
    const k = values.length;
    const e = await ortEngineFromOnnx(withFloat16Outputs(identityOnnx(k), ['y']), [k], 1, ['y']);
    try {
      expect(e.runMixed).toBeDefined();
      const [half] = await (e.runMixed as NonNullable<typeof e.runMixed>)(values, 1, ['y'], ['y']);
      const [full] = await e.run(values, 1, ['y']);
      expect(half.data).toBeInstanceOf(Uint16Array);
      expect(Array.from(full.data)).toEqual(Array.from(values));
      expect(Array.from(half.data)).toEqual(Array.from(toFloat16(values)));
    } finally {
      await e.dispose();
    }
  });

  it('equal toFloat16 of the float32 activations of a MobileNetV2 (boundary and out_relu, 4 images)', async () => {
    await initBackend('wasm', () => {});
    const model = buildMobileNetV2({ alpha: 0.35, inputSize: 96 });
    randomizeBatchNorm(model);
    const layers = ['block_13_expand_relu', 'out_relu'];
    const e = await createEngine(model, 'ort', { outputs: layers, float16Outputs: true });
    model.dispose();
    try {
      let s = 7;
      const px = new Float32Array(4 * 96 * 96 * 3).map(() => {
        s = (s * 1664525 + 1013904223) >>> 0;
        return s % 256;
      });
      const full = await e.run(px, 4);
      const mixed = await (e.runMixed as NonNullable<typeof e.runMixed>)(px, 4, layers, ['block_13_expand_relu']);
      expect(mixed[0].data).toBeInstanceOf(Uint16Array);
      expect(mixed[0].dims).toEqual(full[0].dims);
      expect(Array.from(mixed[0].data)).toEqual(Array.from(toFloat16(full[0].data)));
      // Not asked as float16: the float32 values themselves.
      expect(mixed[1].data).toBeInstanceOf(Float32Array);
      expect(Buffer.from(mixed[1].data.buffer).equals(Buffer.from(full[1].data.buffer))).toBe(true);
      const [only] = await (e.runMixed as NonNullable<typeof e.runMixed>)(px, 4, ['out_relu'], ['out_relu']);
      expect(Array.from(only.data)).toEqual(Array.from(toFloat16(full[1].data)));
    } finally {
      await e.dispose();
    }
  });
});
