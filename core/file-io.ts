import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { tf } from './tf.js';
import type { io } from '@tensorflow/tfjs';

/** Accepts `file:///abs/model.json`, `/abs/model.json`, or a folder holding model.json. */
export function modelJsonPath(uri: string): string {
  const p = uri.startsWith('file://') ? fileURLToPath(uri) : uri;
  return p.endsWith('.json') ? path.resolve(p) : path.resolve(p, 'model.json');
}

/** Reads a tfjs layers model (model.json + weight shards) from disk without tfjs-node. */
export async function loadModelArtifacts(uri: string): Promise<io.ModelArtifacts> {
  const jsonPath = modelJsonPath(uri);
  const dir = path.dirname(jsonPath);
  let modelJson: io.ModelJSON;
  try {
    modelJson = JSON.parse(await readFile(jsonPath, 'utf8'));
  } catch (e) {
    throw new Error(`cannot read model ${jsonPath}: ${(e as Error).message}`);
  }
  const specs: io.WeightsManifestEntry[] = [];
  const buffers: Buffer[] = [];
  for (const group of modelJson.weightsManifest ?? []) {
    specs.push(...group.weights);
    for (const p of group.paths) buffers.push(await readFile(path.join(dir, p)));
  }
  const all = Buffer.concat(buffers);
  const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
  return {
    modelTopology: modelJson.modelTopology,
    format: modelJson.format,
    generatedBy: modelJson.generatedBy,
    convertedBy: modelJson.convertedBy,
    trainingConfig: modelJson.trainingConfig,
    userDefinedMetadata: modelJson.userDefinedMetadata,
    weightSpecs: specs,
    weightData,
  };
}

/**
 * Writes model.json + one weights.bin into `dir`, atomically: files go to a temporary sibling
 * folder that is renamed into place, so a reader never sees half a model.
 */
export async function saveModelArtifacts(dir: string, artifacts: io.ModelArtifacts): Promise<io.SaveResult> {
  const target = path.resolve(dir);
  const tmp = `${target}.tmp-${process.pid}-${Date.now()}`;
  await mkdir(tmp, { recursive: true });
  const weightData = artifacts.weightData
    ? Buffer.from(tf.io.concatenateArrayBuffers(
        Array.isArray(artifacts.weightData) ? artifacts.weightData : [artifacts.weightData],
      ))
    : Buffer.alloc(0);
  const modelJson = {
    modelTopology: artifacts.modelTopology,
    format: artifacts.format ?? 'layers-model',
    generatedBy: artifacts.generatedBy,
    convertedBy: artifacts.convertedBy ?? null,
    ...(artifacts.trainingConfig ? { trainingConfig: artifacts.trainingConfig } : {}),
    ...(artifacts.userDefinedMetadata ? { userDefinedMetadata: artifacts.userDefinedMetadata } : {}),
    weightsManifest: [{ paths: ['weights.bin'], weights: artifacts.weightSpecs ?? [] }],
  };
  await writeFile(path.join(tmp, 'weights.bin'), weightData);
  await writeFile(path.join(tmp, 'model.json'), JSON.stringify(modelJson));
  await mkdir(target, { recursive: true });
  // Move the two files in weights-first, so model.json only ever points at a complete weights.bin.
  await rename(path.join(tmp, 'weights.bin'), path.join(target, 'weights.bin'));
  await rename(path.join(tmp, 'model.json'), path.join(target, 'model.json'));
  await rm(tmp, { recursive: true, force: true });
  return {
    modelArtifactsInfo: {
      dateSaved: new Date(),
      modelTopologyType: 'JSON',
      modelTopologyBytes: JSON.stringify(artifacts.modelTopology).length,
      weightSpecsBytes: JSON.stringify(artifacts.weightSpecs).length,
      weightDataBytes: weightData.byteLength,
    },
  };
}

export function fileHandler(uri: string): io.IOHandler {
  const p = uri.startsWith('file://') ? fileURLToPath(uri) : uri;
  return {
    load: () => loadModelArtifacts(p),
    save: (artifacts) => saveModelArtifacts(p.endsWith('.json') ? path.dirname(p) : p, artifacts),
  };
}

let registered = false;
/** Lets `tf.loadLayersModel('file://...')` and `model.save('file://...')` work on any backend. */
export function registerFileRouter(): void {
  if (registered) return;
  registered = true;
  const router = (url: string | string[]) => {
    const u = Array.isArray(url) ? url[0] : url;
    return typeof u === 'string' && u.startsWith('file://') ? fileHandler(u) : null;
  };
  // tfjs routers return null for URLs they do not handle, which its router type does not spell out.
  const r = router as unknown as Parameters<typeof tf.io.registerLoadRouter>[0];
  tf.io.registerLoadRouter(r);
  tf.io.registerSaveRouter(r);
}
