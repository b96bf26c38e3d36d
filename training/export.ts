import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { toClassProbabilities } from '../core/classifier.js';
import { saveModelArtifacts } from '../core/file-io.js';
import type { RgbImage } from '../core/image.js';
import { type Manifest, ManifestSchema, type Verification } from '../core/manifest.js';
import { buildServingOnnx } from '../core/serving-onnx.js';
import type { LayersModel, Tensor } from '../core/tf.js';
import { tf } from '../core/tf.js';
import { makeVersion, sha256 } from '../core/versioning.js';

/** How many validation images `verification.json` keeps (publish checks a copy reproduces them). */
export const VERIFICATION_IMAGES = 8;

export function stackImages(images: readonly RgbImage[]): Float32Array {
  const size = images[0].width;
  const px = new Float32Array(images.length * size * size * 3);
  for (const [i, img] of images.entries()) px.set(img.data, i * size * size * 3);
  return px;
}

/** Class probabilities of the exported (inference) model for decoded images, in batches. */
export async function predictProbabilities(
  model: LayersModel,
  images: readonly RgbImage[],
  numClasses: number,
  batch = 16,
): Promise<number[][]> {
  const rows: number[][] = [];
  for (let s = 0; s < images.length; s += batch) {
    const part = images.slice(s, s + batch);
    const size = part[0].width;
    const out = tf.tidy(() => model.predict(tf.tensor4d(stackImages(part), [part.length, size, size, 3])) as Tensor);
    rows.push(...toClassProbabilities((await out.data()) as Float32Array, numClasses));
    out.dispose();
  }
  return rows;
}

export type ManifestDraft = Omit<Manifest, 'version' | 'files' | 'createdAt'>;

/**
 * Writes model.json + weights.bin, verification.json, serving.onnx (the fused graph onnxruntime
 * serves, core/serving-onnx.ts) and manifest.json (with the weights' sha256 and the serving record)
 * into `dir`. The manifest goes last: a folder with a manifest is a complete model.
 */
export async function exportModel(
  dir: string,
  model: LayersModel,
  draft: ManifestDraft,
  verify: { images: readonly RgbImage[]; labels: readonly number[] },
): Promise<Manifest> {
  const started = performance.now();
  const cpuStarted = process.cpuUsage();
  await mkdir(dir, { recursive: true });
  await saveModelArtifacts(dir, await modelArtifacts(model));
  const weights = await readFile(path.join(dir, 'weights.bin'));
  const digest = sha256(weights);
  const images = verify.images.slice(0, VERIFICATION_IMAGES);
  const size = images[0]?.width ?? draft.input.size;
  const verification: Verification = {
    shape: [images.length, size, size, 3],
    pixels: Buffer.concat(images.map((i) => Buffer.from(i.data))).toString('base64'),
    labels: verify.labels.slice(0, images.length) as number[],
    probabilities: images.length ? await predictProbabilities(model, images, draft.classes.length) : [],
  };
  await writeFile(path.join(dir, 'verification.json'), JSON.stringify(verification));
  const serving = buildServingOnnx(model, verification, verification.probabilities, 'float32');
  if (serving) await writeFile(path.join(dir, serving.record.onnx.file), serving.bytes);
  const now = new Date();
  // The draft's timings end where the export starts; the export's own time is known only here.
  const exportSeconds = (performance.now() - started) / 1000;
  const manifest = ManifestSchema.parse({
    ...draft,
    timings: {
      ...draft.timings,
      exportSeconds,
      totalSeconds: (draft.timings.totalSeconds ?? 0) + exportSeconds,
      ...cpuTimings(draft.timings, process.cpuUsage(cpuStarted)),
    },
    version: makeVersion(digest, now),
    createdAt: now.toISOString(),
    files: [{ path: 'weights.bin', bytes: weights.byteLength, sha256: digest }],
    ...(serving ? { serving: serving.record } : {}),
  });
  await writeFile(path.join(dir, 'manifest.json'), JSON.stringify(manifest, null, 2));
  return manifest;
}

/** The export's CPU seconds, added to the draft's total when it has one (train() records CPU time). */
function cpuTimings(timings: Record<string, number>, used: NodeJS.CpuUsage): Record<string, number> {
  if (timings.totalCpuSeconds === undefined) return {};
  const exportCpuSeconds = (used.user + used.system) / 1e6;
  return { exportCpuSeconds, totalCpuSeconds: timings.totalCpuSeconds + exportCpuSeconds };
}

/** The model's topology and weights in memory, as `model.save` would write them. */
export async function modelArtifacts(model: LayersModel): Promise<tf.io.ModelArtifacts> {
  let captured: tf.io.ModelArtifacts | undefined;
  await model.save(
    tf.io.withSaveHandler(async (a) => {
      captured = a;
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  return captured!;
}
