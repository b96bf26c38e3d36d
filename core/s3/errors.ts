// What S3 answers mean, without the AWS SDK: the serving path imports these at start-up and loads
// the SDK (~0.6 MB of JavaScript, ~0.1 s to compile and evaluate) only when a URI is s3://.

export function isNotFound(e: unknown): boolean {
  const err = e as { name?: string; Code?: string; $metadata?: { httpStatusCode?: number } };
  return err?.name === 'NoSuchKey' || err?.name === 'NotFound' || err?.Code === 'NoSuchKey' || err?.$metadata?.httpStatusCode === 404;
}

/** An object larger than the `maxBytes` its reader allows (getObject); its body is not read. */
export class ObjectTooLargeError extends Error {
  override name = 'ObjectTooLargeError';
}

/** ETags come quoted from S3; compare them without the quotes. */
export function cleanEtag(etag: string | undefined): string {
  return (etag ?? '').replace(/^W\//, '').replace(/"/g, '');
}
