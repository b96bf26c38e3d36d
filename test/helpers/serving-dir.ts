import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { VerificationSchema } from '../../core/manifest.js';
import { loadModel } from '../../core/model-loader.js';
import { exportModel, type ManifestDraft } from '../../training/export.js';

/**
 * `dir` as training's exportModel writes it (with serving.onnx), from the weights, manifest and
 * verification images of a folder made by makeModelDir. Needs a tf backend.
 */
export async function exportedFrom(plain: string, dir: string): Promise<string> {
  const { model, manifest } = await loadModel(plain);
  try {
    const v = VerificationSchema.parse(JSON.parse(await readFile(path.join(plain, 'verification.json'), 'utf8')));
    const [, h, w] = v.shape;
    const per = h * w * 3;
    const pixels = Buffer.from(v.pixels, 'base64');
    const images = v.labels.map((_, i) => ({ data: new Uint8Array(pixels.subarray(i * per, (i + 1) * per)), width: w, height: h }));
    const { version: _v, files: _f, createdAt: _c, ...draft } = manifest;
    await exportModel(dir, model, draft as ManifestDraft, { images, labels: v.labels });
    return dir;
  } finally {
    model.dispose();
  }
}
