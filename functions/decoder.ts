import type { PreprocessOptions, RgbImage } from '../core/image.js';

/** Decode + orient + resize to the model's square input: core/image.ts (sharp) or core/image-js.ts (WASM). */
export type Decoder = (bytes: Uint8Array, opts: PreprocessOptions) => Promise<RgbImage>;
