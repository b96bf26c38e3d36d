// Which weights a float16 export (onnx-float16, tflite-float16) keeps float32. One rule for both
// writers, chosen by measurement (alpaca, 327 images, max |dp| vs the float32 tfjs model): the
// depthwise kernels (~5% of the weights) and the small linear convs, i.e. MobileNetV2's early
// projections (<= 64k weights each), which feed the residual path through the rest of the network.
// ONNX alpha 1.0: all float16 (but depthwise) 9.5e-3 at 4.61 MB, so 2.1e-3 at 5.12 MB (float32
// 8.86 MB). Biases are not weights here: the writers keep them float32 everywhere.
import type { FusedOp } from '../graph/fused-graph.js';

/** Linear convs with at most this many kernel weights stay float32 in float16 exports. */
export const SMALL_LINEAR_CONV = 65_536;

/** True when the kernel of `op` stays float32 in a float16 export. */
export function keepKernelFloat32(op: FusedOp): boolean {
  return op.op === 'depthwiseConv2d' || (op.op === 'conv2d' && op.activation === 'linear' && op.kernel.length <= SMALL_LINEAR_CONV);
}
