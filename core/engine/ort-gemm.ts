// Matrix products of the trainable tail on onnxruntime's CPU kernels (MLAS: AVX2/AVX-512 on x64,
// NEON on arm64), called synchronously from inside a tfjs WASM kernel. The tail's 1x1 convolutions
// and their gradients are ~80% of a phase-2 step; as XNNPACK in 128-bit WASM SIMD they run at
// ~5-12 GFLOP/s a thread, as MLAS Gemm ~100+ (`npm run bench:tail`).
//
// tfjs kernels are synchronous, and onnxruntime-node's public run() is a Promise; its native binding
// runs synchronously (the public run only defers it with setImmediate). This module is the one place
// that uses the binding directly (dist/binding.js, asserted for the version it was written for).
// The inputs are passed as views of the WASM heap; the result is copied into the output tensor's place there.
import { createRequire } from 'node:module';
import type { KernelFunc, TensorInfo } from '@tensorflow/tfjs';
import { onnxModelType } from '../export/onnx.js';
import { tf } from '../tf.js';
import { makeResident, runKernel, wasmInternals } from '../tfjs-internals.js';
import { availableCores } from './cpu.js';
import { ortNodeVersion } from './ort-session.js';

/** onnxruntime-node versions whose binding this module was written against. */
const BINDING_VERSIONS = /^1\.23\./;
export const ORT_GEMM_KERNEL = 'EdgetuneOrtGemm';

type Act = 'linear' | 'relu6';
interface NativeSession {
  loadModel(buffer: ArrayBuffer, byteOffset: number, byteLength: number, options: object): void;
  run(feeds: Record<string, unknown>, fetches: Record<string, unknown>, options: object): Record<string, unknown>;
  dispose(): void;
}
interface Native {
  binding: { InferenceSession: new () => NativeSession };
  Tensor: new (type: 'float32', data: Float32Array, dims: readonly number[]) => unknown;
}

let native: Native | undefined;
let nativeError: string | undefined;

function loadNative(): Native {
  if (native) return native;
  if (nativeError) throw new Error(nativeError);
  try {
    const require = createRequire(import.meta.url);
    const version = ortNodeVersion();
    if (!version) throw new Error('onnxruntime-node is not installed');
    if (!BINDING_VERSIONS.test(version))
      throw new Error(`onnxruntime-node ${version}: its native binding is unverified here (written for 1.23)`);
    const ort = require('onnxruntime-node') as { Tensor: Native['Tensor'] };
    const b = require('onnxruntime-node/dist/binding.js') as { binding: Native['binding']; initOrt: () => void };
    b.initOrt();
    native = { binding: b.binding, Tensor: ort.Tensor };
    return native;
  } catch (e) {
    nativeError = `onnxruntime-node's synchronous binding is not available (${(e as Error).message})`;
    throw new Error(nativeError);
  }
}

/** Why the tail's products cannot run on onnxruntime here, or undefined when they can. */
export function ortGemmUnavailable(): string | undefined {
  try {
    loadNative();
    return undefined;
  } catch (e) {
    return (e as Error).message;
  }
}

const FLOAT = 1;

/** Y = act(op(A) @ op(B) [+ C]) with dynamic dimensions: one ONNX Gemm (and a Clip for ReLU6). */
export function gemmOnnx(transA: boolean, transB: boolean, bias: boolean, act: Act): Uint8Array {
  const dims = (names: string[]) => ({ dim: names.map((dim_param) => ({ dim_param })) });
  const value = (name: string, names: string[]) => ({ name, type: { tensor_type: { elem_type: FLOAT, shape: dims(names) } } });
  const aDims = transA ? ['K', 'M'] : ['M', 'K'];
  const bDims = transB ? ['N', 'K'] : ['K', 'N'];
  const gemmOut = act === 'relu6' ? 'z' : 'y';
  const node: object[] = [
    {
      op_type: 'Gemm',
      input: ['a', 'b', ...(bias ? ['c'] : [])],
      output: [gemmOut],
      attribute: [
        { name: 'transA', type: 2, i: transA ? 1 : 0 },
        { name: 'transB', type: 2, i: transB ? 1 : 0 },
      ],
    },
  ];
  const initializer: object[] = [];
  if (act === 'relu6') {
    const scalar = (name: string, v: number) => ({
      name,
      dims: [],
      data_type: FLOAT,
      raw_data: new Uint8Array(new Float32Array([v]).buffer),
    });
    initializer.push(scalar('zero', 0), scalar('six', 6));
    node.push({ op_type: 'Clip', input: ['z', 'zero', 'six'], output: ['y'] });
  }
  const type = onnxModelType();
  return type
    .encode({
      ir_version: 8,
      opset_import: [{ domain: '', version: 17 }],
      producer_name: 'edgetune',
      graph: {
        name: 'edgetune_gemm',
        node,
        initializer,
        input: [value('a', aDims), value('b', bDims), ...(bias ? [value('c', ['N'])] : [])],
        output: [value('y', ['M', 'N'])],
      },
    })
    .finish();
}

const sessions = new Map<string, NativeSession>();

/** Most intra-op threads a product uses: 2 (MLAS gains little beyond for these sizes). */
export const ORT_GEMM_MAX_THREADS = Math.min(2, availableCores());

/**
 * Intra-op threads of each product. MLAS splits a product over the output, never over the summed
 * dimension, so every thread count gives the same bits (test/ort-gemm.test.ts). A training run
 * switches between 1 (while the frozen-layer workers compute the next epoch's views: the second
 * thread's share of the work would cost them more than it saves the step) and the maximum (when
 * no view is pending); see train-phases.ts.
 */
let gemmThreads = ORT_GEMM_MAX_THREADS;

export const ortGemmThreads = (): number => gemmThreads;

/** Sets the intra-op threads of the products from now on (one session per thread count, kept). */
export function setOrtGemmThreads(threads: number): void {
  if (!Number.isInteger(threads) || threads < 1) throw new Error(`ort gemm threads must be a positive integer; got ${threads}`);
  gemmThreads = threads;
}

function sessionFor(transA: boolean, transB: boolean, bias: boolean, act: Act): NativeSession {
  const key = `${+transA}${+transB}${+bias}${act}/${gemmThreads}`;
  let s = sessions.get(key);
  if (!s) {
    const { binding } = loadNative();
    const bytes = gemmOnnx(transA, transB, bias, act);
    s = new binding.InferenceSession();
    s.loadModel(bytes.buffer as ArrayBuffer, bytes.byteOffset, bytes.byteLength, {
      executionProviders: [{ name: 'cpu' }],
      graphOptimizationLevel: 'all',
      executionMode: 'sequential',
      intraOpNumThreads: gemmThreads,
      interOpNumThreads: 1,
      // A spinning thread would take the core from the frozen-layer workers between products.
      extra: { session: { intra_op: { allow_spinning: '0' } } },
    });
    sessions.set(key, s);
  }
  return s;
}

interface GemmAttrs {
  transA: boolean;
  transB: boolean;
  activation: Act;
}

function ortGemmKernel({ inputs, backend, attrs }: Parameters<KernelFunc>[0]): TensorInfo {
  const { a, b, bias } = inputs as { a: TensorInfo; b: TensorInfo; bias?: TensorInfo };
  const { transA, transB, activation } = attrs as unknown as GemmAttrs;
  if (a.shape.length !== 2 || b.shape.length !== 2)
    throw new Error(`${ORT_GEMM_KERNEL}: 2-D operands expected; got [${a.shape}] and [${b.shape}]`);
  const [m, k] = transA ? [a.shape[1], a.shape[0]] : a.shape;
  const [kb, n] = transB ? [b.shape[1], b.shape[0]] : b.shape;
  if (k !== kb) throw new Error(`${ORT_GEMM_KERNEL}: inner dimensions differ (${k} vs ${kb})`);
  if (bias && (bias.shape.length !== 1 || bias.shape[0] !== n))
    throw new Error(`${ORT_GEMM_KERNEL}: bias must be [${n}]; got [${bias.shape}]`);
  const be = wasmInternals(backend);
  const { Tensor } = loadNative();
  const session = sessionFor(transA, transB, !!bias, activation);
  const out = be.makeOutput([m, n], 'float32');
  makeResident(be, bias ? [a, b, bias] : [a, b]);
  // Views taken after every allocation: growing the heap detaches earlier ones.
  const feeds: Record<string, unknown> = {
    a: new Tensor('float32', be.typedArrayFromHeap(a), a.shape),
    b: new Tensor('float32', be.typedArrayFromHeap(b), b.shape),
    ...(bias ? { c: new Tensor('float32', be.typedArrayFromHeap(bias), bias.shape) } : {}),
  };
  const y = be.typedArrayFromHeap(out);
  const result = session.run(feeds, { y: new Tensor('float32', y, [m, n]) }, {}) as { y?: { data?: Float32Array } };
  // onnxruntime-node 1.23 writes into the fetch it is given and also returns a copy of it; the copy
  // is what is taken (a memcpy of the output), so a version that only returns one stays correct.
  const got = result.y?.data;
  if (!got || got.length !== y.length) throw new Error(`${ORT_GEMM_KERNEL}: onnxruntime returned no [${m}, ${n}] result`);
  if (got.buffer !== y.buffer || got.byteOffset !== y.byteOffset) y.set(got);
  return out;
}

let registered = false;

/** Registers the kernel on the wasm backend (throws when the binding is not available). Idempotent. */
export function registerOrtGemm(): void {
  if (registered) return;
  loadNative();
  tf.registerKernel({ kernelName: ORT_GEMM_KERNEL, backendName: 'wasm', kernelFunc: ortGemmKernel as KernelFunc });
  registered = true;
}

/** act(op(a) @ op(b) + bias) on onnxruntime, synchronously, for tensors on the wasm backend. */
export function ortGemm(
  a: tf.Tensor2D,
  b: tf.Tensor2D,
  opts: { transA?: boolean; transB?: boolean; bias?: tf.Tensor1D; activation?: Act } = {},
): tf.Tensor2D {
  registerOrtGemm();
  const attrs: GemmAttrs = { transA: !!opts.transA, transB: !!opts.transB, activation: opts.activation ?? 'linear' };
  return runKernel<tf.Tensor2D>(ORT_GEMM_KERNEL, opts.bias ? { a, b, bias: opts.bias } : { a, b }, attrs as never);
}

/** Releases the sessions (tests, the end of a run). */
export function disposeOrtGemm(): void {
  for (const s of sessions.values()) s.dispose();
  sessions.clear();
}
