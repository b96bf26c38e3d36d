/** `s3://bucket/some/key` -> { bucket, key } (key without a leading slash; may be empty). */
export function parseS3Uri(uri: string): { bucket: string; key: string } {
  const m = /^s3:\/\/([^/]+)(?:\/(.*))?$/.exec(uri.trim());
  if (!m) throw new Error(`not an S3 URI: "${uri}" (expected s3://bucket/key)`);
  const bucket = m[1];
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) {
    throw new Error(`invalid S3 bucket name "${bucket}" in ${uri}`);
  }
  return { bucket, key: (m[2] ?? '').replace(/^\/+/, '') };
}

export function isS3Uri(uri: string): boolean {
  return uri.startsWith('s3://');
}

export function s3Uri(bucket: string, key: string): string {
  return `s3://${bucket}/${key}`;
}

/** Joins key segments with single slashes. */
export function joinKey(...parts: string[]): string {
  return parts
    .filter((p) => p !== '')
    .map((p, i) => (i === 0 ? p.replace(/\/+$/, '') : p.replace(/^\/+|\/+$/g, '')))
    .join('/');
}

/** Key prefix that ends with exactly one slash (empty stays empty). */
export function asPrefix(key: string): string {
  const k = key.replace(/\/+$/, '');
  return k === '' ? '' : `${k}/`;
}
