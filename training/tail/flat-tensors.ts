// Many float32 tensors as one Float32Array (one message, one transfer between threads) and back.
import type { Tensor } from '@tensorflow/tfjs';
import { tf } from '../../core/tf.js';

export function flatSize(shapes: readonly (readonly number[])[]): number {
  return shapes.reduce((a, s) => a + s.reduce((x, y) => x * y, 1), 0);
}

/** Values of `tensors`, concatenated in order (float32). */
export function packTensors(tensors: readonly Tensor[]): Float32Array {
  const out = new Float32Array(flatSize(tensors.map((t) => t.shape)));
  let offset = 0;
  for (const t of tensors) {
    out.set(t.dataSync() as Float32Array, offset);
    offset += t.size;
  }
  return out;
}

/** Tensors of `shapes` over consecutive ranges of `data` (copied into the backend). */
export function unpackTensors(data: Float32Array, shapes: readonly (readonly number[])[]): Tensor[] {
  const total = flatSize(shapes);
  if (data.length !== total) throw new Error(`flat tensors: expected ${total} values; got ${data.length}`);
  let offset = 0;
  return shapes.map((shape) => {
    const size = shape.reduce((x, y) => x * y, 1);
    const t = tf.tensor(data.subarray(offset, offset + size), shape as number[], 'float32');
    offset += size;
    return t;
  });
}
