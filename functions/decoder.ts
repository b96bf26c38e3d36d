import type { PreprocessOptions, RgbImage } from '../core/image.js';

/** Decode + orient + resize to the model's square input: core/image.ts (sharp) or core/image-js.ts (WASM). */
export type Decoder = (bytes: Uint8Array, opts: PreprocessOptions) => Promise<RgbImage>;

/**
 * The sharp decoder (core/image.ts), its module loaded by `load()` or else by the first decode,
 * with libvips' loaders restricted (restrictSharpLoaders) before any image reaches it. A server
 * calls load() once its model is on the way: sharp's ~50 ms on the main thread then overlap the
 * download of the model's files.
 */
export function sharpDecoder(opts: { svg?: boolean } = {}): { decode: Decoder; load: () => Promise<void> } {
  let module: Promise<typeof import('../core/image.js')> | undefined;
  const load = () =>
    (module ??= import('../core/image.js').then((m) => {
      m.restrictSharpLoaders(opts);
      return m;
    }));
  return {
    decode: async (bytes, o) => (await load()).decodeImage(bytes, o),
    load: async () => {
      await load();
    },
  };
}
