import path from 'node:path';
import type { io } from '@tensorflow/tfjs';
import { tf } from '../tf.js';
import { getObject, putObject } from './client.js';
import { joinKey, parseS3Uri } from './uri.js';

/** `s3://b/dir` or `s3://b/dir/model.json` -> the folder prefix and model.json's key. */
function locate(uri: string): { bucket: string; dir: string; modelKey: string } {
  const { bucket, key } = parseS3Uri(uri);
  const k = key.replace(/\/+$/, '');
  const dir = k.endsWith('.json') ? path.posix.dirname(k) : k;
  const modelKey = k.endsWith('.json') ? k : joinKey(k, 'model.json');
  return { bucket, dir: dir === '.' ? '' : dir, modelKey };
}

/** tfjs IOHandler reading/writing model.json + weights.bin under an S3 prefix. */
export function s3Handler(uri: string): io.IOHandler {
  const { bucket, dir, modelKey } = locate(uri);
  return {
    async load(): Promise<io.ModelArtifacts> {
      const modelJson = JSON.parse((await getObject(`s3://${bucket}/${modelKey}`)).body.toString('utf8')) as io.ModelJSON;
      const specs: io.WeightsManifestEntry[] = [];
      const buffers: Buffer[] = [];
      for (const group of modelJson.weightsManifest ?? []) {
        specs.push(...group.weights);
        for (const p of group.paths) buffers.push((await getObject(`s3://${bucket}/${joinKey(dir, path.posix.normalize(p))}`)).body);
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
    },
    async save(artifacts: io.ModelArtifacts): Promise<io.SaveResult> {
      const weightData = artifacts.weightData
        ? Buffer.from(tf.io.concatenateArrayBuffers(Array.isArray(artifacts.weightData) ? artifacts.weightData : [artifacts.weightData]))
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
      // Weights first: model.json only ever points at a complete weights.bin.
      await putObject(`s3://${bucket}/${joinKey(dir, 'weights.bin')}`, weightData, { ContentType: 'application/octet-stream' });
      const json = JSON.stringify(modelJson);
      await putObject(`s3://${bucket}/${modelKey}`, json, { ContentType: 'application/json' });
      return {
        modelArtifactsInfo: {
          dateSaved: new Date(),
          modelTopologyType: 'JSON',
          modelTopologyBytes: JSON.stringify(artifacts.modelTopology).length,
          weightSpecsBytes: JSON.stringify(artifacts.weightSpecs).length,
          weightDataBytes: weightData.byteLength,
        },
      };
    },
  };
}

let registered = false;
/** Lets `model.save('s3://...')` and `tf.loadLayersModel('s3://...')` work. */
export function registerS3Router(): void {
  if (registered) return;
  registered = true;
  const router = (url: string | string[]) => {
    const u = Array.isArray(url) ? url[0] : url;
    return typeof u === 'string' && u.startsWith('s3://') ? s3Handler(u) : null;
  };
  // tfjs routers return null for URLs they do not handle, which its IORouter type does not spell out.
  const r = router as unknown as Parameters<typeof tf.io.registerLoadRouter>[0];
  tf.io.registerLoadRouter(r);
  tf.io.registerSaveRouter(r);
}
