import type { EngineName } from '../../core/engine/engine.js';
import { ORT_GEMM_MAX_THREADS, ortGemmUnavailable } from '../../core/engine/ort-gemm.js';
import { tf } from '../../core/tf.js';
import { trainingEngine } from '../features.js';

export interface TailGemm {
  gemm: EngineName;
  /** For the log and the manifest (`engine.tail`). */
  description: string;
}

/**
 * Where the fast tail's 1x1 products run: on onnxruntime when the training engine is (`--engine`
 * auto or ort, it loads) and tfjs runs on WASM; else tfjs' own kernels. The rest of the tail is tfjs.
 */
export async function chooseTailGemm(): Promise<TailGemm> {
  const backend = tf.getBackend();
  if (backend !== 'wasm') return { gemm: 'wasm', description: `tfjs ${backend}` };
  const engine = await trainingEngine();
  if (engine.name !== 'ort') return { gemm: 'wasm', description: 'tfjs wasm (1x1 products on XNNPACK)' };
  const why = ortGemmUnavailable();
  if (why) return { gemm: 'wasm', description: `tfjs wasm (1x1 products on XNNPACK; onnxruntime not used: ${why})` };
  return {
    gemm: 'ort',
    description: `tfjs wasm, 1x1 products on onnxruntime-node (CPU, ${ORT_GEMM_MAX_THREADS === 1 ? '1 intra-op thread' : `1 intra-op thread while the frozen-layer workers compute views, else ${ORT_GEMM_MAX_THREADS}`})`,
  };
}
