import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { io } from '@tensorflow/tfjs';
import { artifactsFromModelJson, modelJsonText, registerPrefixRouter, saveResult, weightBuffer } from './model-json.js';

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
  return artifactsFromModelJson(modelJson, (p) => readFile(path.join(dir, p)));
}

/**
 * Writes model.json + one weights.bin into `dir`, atomically: files go to a temporary sibling
 * folder that is renamed into place, so a reader never sees half a model.
 */
export async function saveModelArtifacts(dir: string, artifacts: io.ModelArtifacts): Promise<io.SaveResult> {
  const target = path.resolve(dir);
  const tmp = `${target}.tmp-${process.pid}-${Date.now()}`;
  await mkdir(tmp, { recursive: true });
  const weightData = weightBuffer(artifacts);
  await writeFile(path.join(tmp, 'weights.bin'), weightData);
  await writeFile(path.join(tmp, 'model.json'), modelJsonText(artifacts));
  await mkdir(target, { recursive: true });
  // Move the two files in weights-first, so model.json only ever points at a complete weights.bin.
  await rename(path.join(tmp, 'weights.bin'), path.join(target, 'weights.bin'));
  await rename(path.join(tmp, 'model.json'), path.join(target, 'model.json'));
  await rm(tmp, { recursive: true, force: true });
  return saveResult(artifacts, weightData.byteLength);
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
  registerPrefixRouter('file://', fileHandler);
}
