// Runs ONNX files in onnxruntime-node (CPU), the runtime our exports are verified in.
import { createRequire } from 'node:module';
import type { InferenceSession } from 'onnxruntime-node';

type Ort = typeof import('onnxruntime-node');
let ort: Promise<Ort> | undefined;

/**
 * onnxruntime-node, loaded on first use; a clear error when it is not installed. Required, not
 * imported, for the reason core/tf.ts gives (~25 ms of a serving cold start); bundles keep it
 * external and their banner's `require` loads it.
 */
export function loadOnnxRuntime(): Promise<Ort> {
  ort ??= new Promise<Ort>((resolve) => {
    const load = typeof require === 'function' ? undefined : createRequire(import.meta.url);
    resolve((load ? load('onnxruntime-node') : require('onnxruntime-node')) as Ort);
  }).catch((e) => {
    ort = undefined;
    throw new Error(`onnxruntime-node is not available (${(e as Error).message}); install it with ONNXRUNTIME_NODE_INSTALL=skip npm ci`);
  });
  return ort;
}

export interface OnnxSession {
  session: InferenceSession;
  run(pixels: Float32Array, shape: number[]): Promise<Record<string, { data: Float32Array; dims: number[] }>>;
  release(): Promise<void>;
}

export async function onnxSession(bytes: Uint8Array, opts: { threads?: number } = {}): Promise<OnnxSession> {
  const o = await loadOnnxRuntime();
  const session = await o.InferenceSession.create(bytes, {
    executionProviders: ['cpu'],
    graphOptimizationLevel: 'all',
    ...(opts.threads ? { intraOpNumThreads: opts.threads, interOpNumThreads: 1 } : {}),
  });
  return {
    session,
    async run(pixels, shape) {
      const feeds = { [session.inputNames[0]]: new o.Tensor('float32', pixels, shape) };
      const res = await session.run(feeds);
      const out: Record<string, { data: Float32Array; dims: number[] }> = {};
      for (const name of session.outputNames) {
        const t = res[name];
        out[name] = { data: Float32Array.from(t.data as Float32Array), dims: [...t.dims] };
        t.dispose();
      }
      return out;
    },
    release: () => session.release(),
  };
}

/** Probability rows of a classifier export for NHWC RGB 0..255 pixels ([n, h, w, 3] back to back), in batches. */
export async function onnxProbabilities(
  bytes: Uint8Array,
  pixels: Uint8Array | Float32Array,
  shape: [number, number, number, number],
  batch = 16,
): Promise<number[][]> {
  const s = await onnxSession(bytes);
  try {
    const [n, h, w, c] = shape;
    const per = h * w * c;
    const rows: number[][] = [];
    for (let start = 0; start < n; start += batch) {
      const end = Math.min(n, start + batch);
      const x = Float32Array.from(pixels.subarray(start * per, end * per));
      const out = await s.run(x, [end - start, h, w, c]);
      const { data, dims } = out[s.session.outputNames[0]];
      const k = dims[1];
      for (let r = 0; r < end - start; r++) rows.push(Array.from(data.subarray(r * k, (r + 1) * k)));
    }
    return rows;
  } finally {
    await s.release();
  }
}
