import path from 'node:path';
import type { io } from '@tensorflow/tfjs';
import { artifactsFromModelJson, modelJsonText, registerPrefixRouter, saveResult, weightBuffer } from '../model-json.js';
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
      return artifactsFromModelJson(
        modelJson,
        async (p) => (await getObject(`s3://${bucket}/${joinKey(dir, path.posix.normalize(p))}`)).body,
      );
    },
    async save(artifacts: io.ModelArtifacts): Promise<io.SaveResult> {
      const weights = weightBuffer(artifacts);
      // Weights first: model.json only ever points at a complete weights.bin.
      await putObject(`s3://${bucket}/${joinKey(dir, 'weights.bin')}`, weights, { ContentType: 'application/octet-stream' });
      await putObject(`s3://${bucket}/${modelKey}`, modelJsonText(artifacts), { ContentType: 'application/json' });
      return saveResult(artifacts, weights.byteLength);
    },
  };
}

let registered = false;
/** Lets `model.save('s3://...')` and `tf.loadLayersModel('s3://...')` work. */
export function registerS3Router(): void {
  if (registered) return;
  registered = true;
  registerPrefixRouter('s3://', s3Handler);
}
