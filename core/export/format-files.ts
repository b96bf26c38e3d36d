// Reading a published version's format files as streams (the API's GET /v1/model/files/...), from the
// version folder on S3 or on disk, and the media type each file is served with.
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { isNotFound } from '../s3/errors.js';
import { isS3Uri, joinKey, parseS3Uri } from '../s3/uri.js';

const MEDIA_TYPES: Record<string, string> = {
  '.json': 'application/json',
  '.txt': 'text/plain; charset=utf-8',
  '.bin': 'application/octet-stream',
  '.onnx': 'application/octet-stream',
  '.tflite': 'application/octet-stream',
};

export function mediaTypeOf(file: string): string {
  return MEDIA_TYPES[path.extname(file).toLowerCase()] ?? 'application/octet-stream';
}

export interface FileStream {
  body: ReadableStream<Uint8Array>;
  bytes?: number;
}

/** A file of a version folder (s3://bucket/models/x/<version> or a local folder) as a stream; undefined when absent. */
export async function openVersionFile(versionUri: string, rel: string): Promise<FileStream | undefined> {
  if (isS3Uri(versionUri)) {
    const { bucket, key } = parseS3Uri(versionUri);
    // Imported here so that serving a folder never loads the AWS SDK.
    const { sdkClient } = await import('../s3/client.js');
    try {
      const { sdk, client } = await sdkClient();
      const out = await client.send(new sdk.GetObjectCommand({ Bucket: bucket, Key: joinKey(key.replace(/\/+$/, ''), rel) }));
      if (!out.Body) return undefined;
      return { body: out.Body.transformToWebStream() as ReadableStream<Uint8Array>, bytes: out.ContentLength };
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
  }
  const file = path.join(versionUri, rel);
  try {
    const st = await stat(file);
    if (!st.isFile()) return undefined;
    return { body: Readable.toWeb(createReadStream(file)) as ReadableStream<Uint8Array>, bytes: st.size };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}
