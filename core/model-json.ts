import type { io } from '@tensorflow/tfjs';
import { tf } from './tf.js';

/** The weight bytes of artifacts as one Buffer (tfjs may hand several ArrayBuffers). */
export function weightBuffer(artifacts: io.ModelArtifacts): Buffer {
  if (!artifacts.weightData) return Buffer.alloc(0);
  const parts = Array.isArray(artifacts.weightData) ? artifacts.weightData : [artifacts.weightData];
  return Buffer.from(tf.io.concatenateArrayBuffers(parts));
}

/** model.json text for artifacts whose weights are stored as one `weights.bin`. */
export function modelJsonText(artifacts: io.ModelArtifacts, specs: io.WeightsManifestEntry[] = artifacts.weightSpecs ?? []): string {
  return JSON.stringify({
    modelTopology: artifacts.modelTopology,
    format: artifacts.format ?? 'layers-model',
    generatedBy: artifacts.generatedBy,
    convertedBy: artifacts.convertedBy ?? null,
    ...(artifacts.trainingConfig ? { trainingConfig: artifacts.trainingConfig } : {}),
    ...(artifacts.userDefinedMetadata ? { userDefinedMetadata: artifacts.userDefinedMetadata } : {}),
    weightsManifest: [{ paths: ['weights.bin'], weights: specs }],
  });
}

/**
 * Artifacts from a parsed model.json, reading each weight path (relative to model.json) with
 * `read`, in weightsManifest order.
 */
export async function artifactsFromModelJson(
  modelJson: io.ModelJSON,
  read: (relPath: string) => Promise<Buffer>,
): Promise<io.ModelArtifacts> {
  const specs: io.WeightsManifestEntry[] = [];
  const buffers: Buffer[] = [];
  for (const group of modelJson.weightsManifest ?? []) {
    specs.push(...group.weights);
    for (const p of group.paths) buffers.push(await read(p));
  }
  const all = Buffer.concat(buffers);
  return {
    modelTopology: modelJson.modelTopology,
    format: modelJson.format,
    generatedBy: modelJson.generatedBy,
    convertedBy: modelJson.convertedBy,
    trainingConfig: modelJson.trainingConfig,
    userDefinedMetadata: modelJson.userDefinedMetadata,
    weightSpecs: specs,
    weightData: all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength),
  };
}

export function saveResult(artifacts: io.ModelArtifacts, weightBytes: number): io.SaveResult {
  return {
    modelArtifactsInfo: {
      dateSaved: new Date(),
      modelTopologyType: 'JSON',
      modelTopologyBytes: JSON.stringify(artifacts.modelTopology).length,
      weightSpecsBytes: JSON.stringify(artifacts.weightSpecs).length,
      weightDataBytes: weightBytes,
    },
  };
}

/** Registers a tfjs load and save router for URLs starting with `prefix` (`file://`, `s3://`). */
export function registerPrefixRouter(prefix: string, handler: (url: string) => io.IOHandler): void {
  const router = (url: string | string[]) => {
    const u = Array.isArray(url) ? url[0] : url;
    return typeof u === 'string' && u.startsWith(prefix) ? handler(u) : null;
  };
  // tfjs routers return null for URLs they do not handle, which its router type does not spell out.
  const r = router as unknown as Parameters<typeof tf.io.registerLoadRouter>[0];
  tf.io.registerLoadRouter(r);
  tf.io.registerSaveRouter(r);
}
