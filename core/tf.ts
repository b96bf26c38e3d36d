// The one tfjs entry point of the project: every module imports tf from here, so that
// training, serving and tests share a single engine and backend.
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';

export type { LayersModel, Tensor, Tensor1D, Tensor2D, Tensor3D, Tensor4D } from '@tensorflow/tfjs';
export { tf };
