// The one tfjs entry point of the project: every module imports tf from here, so that
// training, serving and tests share a single engine and backend.
//
// tfjs and its WASM backend are CommonJS packages, required rather than imported: Node scans a
// CommonJS package imported from ESM for its export names on every start, and tfjs re-exports
// six packages (~0.3 s of each CLI start; `require` skips the scan). In an esbuild bundle
// `require` exists (the banner's), so esbuild sees these require calls and bundles the packages;
// in the ESM build, tsx and vitest a require of this file is made.
import { createRequire } from 'node:module';
import type * as TfModule from '@tensorflow/tfjs';
import type * as TfWasmModule from '@tensorflow/tfjs-backend-wasm';

const load = typeof require === 'function' ? undefined : createRequire(import.meta.url);
export const tf = (load ? load('@tensorflow/tfjs') : require('@tensorflow/tfjs')) as typeof TfModule;
/** The WASM backend's module (registers the backend when loaded). */
export const tfWasm = (load ? load('@tensorflow/tfjs-backend-wasm') : require('@tensorflow/tfjs-backend-wasm')) as typeof TfWasmModule;

/** The tfjs types the project names as `tf.X` (a namespace of types beside the `tf` value). */
export declare namespace tf {
  type Rank = TfModule.Rank;
  type Tensor<R extends Rank = Rank> = TfModule.Tensor<R>;
  type Scalar = TfModule.Scalar;
  type Tensor1D = TfModule.Tensor1D;
  type Tensor2D = TfModule.Tensor2D;
  type Tensor4D = TfModule.Tensor4D;
  type Variable<R extends Rank = Rank> = TfModule.Variable<R>;
  type SymbolicTensor = TfModule.SymbolicTensor;
  type LayersModel = TfModule.LayersModel;
  type Optimizer = TfModule.Optimizer;
  type AdamOptimizer = TfModule.AdamOptimizer;
  namespace io {
    type ModelArtifacts = TfModule.io.ModelArtifacts;
    type ModelJSON = TfModule.io.ModelJSON;
    type WeightsManifestEntry = TfModule.io.WeightsManifestEntry;
  }
}

export type { LayersModel, Tensor, Tensor1D, Tensor2D, Tensor3D, Tensor4D } from '@tensorflow/tfjs';
