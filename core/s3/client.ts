import type * as S3Sdk from '@aws-sdk/client-s3';
import { edgetuneConfig } from '../config.js';
import {
  ACCESS_KEY_ENV,
  DEFAULT_BUCKET,
  DEFAULT_S3_DIR,
  type EmbeddedS3,
  SECRET_KEY_ENV,
  startedCredentials,
  startS3rver,
} from './embedded.js';
import { isNotFound, ObjectTooLargeError } from './errors.js';
import { withRetry } from './retry.js';
import { isPlainBucket, type StaticS3Access, signedGetObject } from './signed-get.js';
import { parseS3Uri } from './uri.js';

export { cleanEtag, isNotFound, ObjectTooLargeError } from './errors.js';
export { parseS3Uri } from './uri.js';

const clients = new Map<string, S3Sdk.S3Client>();

/**
 * The SDK, loaded on first use through a dynamic import: bundles then keep it (~1.2 MB) in a chunk
 * of its own that a process compiles only when it needs the SDK, never for staticS3Access() reads.
 */
const loadSdk = (): Promise<typeof S3Sdk> => import('./sdk.js').then((m) => m.s3Sdk);

/**
 * Endpoint of a local/self-hosted S3 (s3rver, MinIO): EDGETUNE_S3_ENDPOINT, else the embedded S3
 * ensureS3() started in this process; undefined for real AWS S3.
 */
export function s3Endpoint(env: NodeJS.ProcessEnv = process.env): string | undefined {
  return edgetuneConfig(env).EDGETUNE_S3_ENDPOINT ?? embedded?.s3.endpoint;
}

/**
 * Credentials for the S3 at `endpoint`: EDGETUNE_S3_ACCESS_KEY_ID / EDGETUNE_S3_SECRET_ACCESS_KEY
 * (the embedded S3's per-run pair, as `edgetune s3` prints it), else the pair of an embedded S3 this
 * process started there, else AWS_* (e.g. for MinIO).
 */
export function endpointCredentials(
  endpoint = s3Endpoint(),
  env: NodeJS.ProcessEnv = process.env,
): { accessKeyId: string; secretAccessKey: string } {
  const config = edgetuneConfig(env);
  const own = endpoint ? startedCredentials(endpoint) : undefined;
  const accessKeyId = config.EDGETUNE_S3_ACCESS_KEY_ID || own?.accessKeyId || env.AWS_ACCESS_KEY_ID;
  const secretAccessKey = config.EDGETUNE_S3_SECRET_ACCESS_KEY || own?.secretAccessKey || env.AWS_SECRET_ACCESS_KEY;
  if (!accessKeyId || !secretAccessKey) {
    throw new Error(
      `EDGETUNE_S3_ENDPOINT is set but no credentials for it: set ${ACCESS_KEY_ENV} and ${SECRET_KEY_ENV} (printed by \`edgetune s3\`)`,
    );
  }
  return { accessKeyId, secretAccessKey };
}

/** The region a local endpoint's requests are signed for (it has none of its own). */
const endpointRegion = (env: NodeJS.ProcessEnv) => env.AWS_REGION || env.AWS_DEFAULT_REGION || 'us-east-1';

/**
 * The S3 client every edgetune module uses, with the SDK whose commands it sends. With
 * EDGETUNE_S3_ENDPOINT set: path-style addressing against that endpoint, signed with
 * endpointCredentials(); otherwise the standard AWS region/credential chain, i.e. real S3. One
 * client per endpoint and key, reused.
 */
export async function sdkClient(): Promise<{ sdk: typeof S3Sdk; client: S3Sdk.S3Client }> {
  const sdk = await loadSdk();
  const endpoint = s3Endpoint();
  const credentials = endpoint ? endpointCredentials(endpoint) : undefined;
  const cacheKey = endpoint ? `${endpoint} ${credentials?.accessKeyId}` : 'aws';
  let client = clients.get(cacheKey);
  if (client) return { sdk, client };
  if (endpoint) {
    client = new sdk.S3Client({
      endpoint,
      forcePathStyle: true,
      region: endpointRegion(process.env),
      credentials,
      // s3rver predates S3's flexible checksums; only send them where an operation requires one.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      // Local endpoint: fail fast at the SDK level; withRetry() does the backoff with clear messages.
      maxAttempts: 1,
    });
  } else {
    client = new sdk.S3Client({ maxAttempts: 3 });
  }
  clients.set(cacheKey, client);
  return { sdk, client };
}

const truthy = (v: string | undefined) => v !== undefined && /^(1|true)$/i.test(v);

/**
 * The key pair and address of a GET that needs no SDK (./signed-get.ts): a local endpoint with its
 * pair, or AWS S3 with the environment's AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (/ AWS_SESSION_TOKEN),
 * which the SDK's chain would pick first too (unless AWS_PROFILE is set), in AWS_REGION of the
 * standard partition. Undefined when anything else decides (profiles, roles, custom endpoints, FIPS, dual-stack, China, GovCloud)
 * or EDGETUNE_S3_CLIENT=sdk says so: then the SDK reads.
 */
export function staticS3Access(env: NodeJS.ProcessEnv = process.env): StaticS3Access | undefined {
  if (edgetuneConfig(env).EDGETUNE_S3_CLIENT === 'sdk') return undefined;
  const endpoint = s3Endpoint(env);
  if (endpoint) {
    return { endpoint, region: endpointRegion(env), credentials: endpointCredentials(endpoint, env) };
  }
  // The SDK reads AWS_REGION, else the profile's region (never AWS_DEFAULT_REGION, the CLI's).
  const {
    AWS_ACCESS_KEY_ID: accessKeyId,
    AWS_SECRET_ACCESS_KEY: secretAccessKey,
    AWS_SESSION_TOKEN: sessionToken,
    AWS_REGION: region,
  } = env;
  // With AWS_PROFILE set the SDK's chain skips the environment's keys for the profile's.
  if (!accessKeyId || !secretAccessKey || !region || env.AWS_PROFILE) return undefined;
  if (env.AWS_ENDPOINT_URL || env.AWS_ENDPOINT_URL_S3 || truthy(env.AWS_USE_FIPS_ENDPOINT) || truthy(env.AWS_USE_DUALSTACK_ENDPOINT)) {
    return undefined;
  }
  if (!/^(?:us|eu|ap|sa|ca|me|af|il|mx)-[a-z]+-\d+$/.test(region)) return undefined;
  return { region, credentials: { accessKeyId, secretAccessKey, ...(sessionToken ? { sessionToken } : {}) } };
}

/** True when the standard AWS environment looks configured (keys, profile, web identity, container). */
export function hasAwsCredentialsInEnv(env: NodeJS.ProcessEnv = process.env): boolean {
  return Boolean(
    env.AWS_ACCESS_KEY_ID ||
      env.AWS_PROFILE ||
      env.AWS_WEB_IDENTITY_TOKEN_FILE ||
      env.AWS_CONTAINER_CREDENTIALS_RELATIVE_URI ||
      env.AWS_CONTAINER_CREDENTIALS_FULL_URI ||
      env.AWS_LAMBDA_FUNCTION_NAME,
  );
}

export interface S3Handle {
  endpoint?: string;
  embedded: boolean;
  /** The in-process s3rver when embedded: its 'event' stream carries S3 event records. */
  server?: EmbeddedS3['server'];
  close(): Promise<void>;
}

let embedded: { s3: EmbeddedS3; users: number } | undefined;

/**
 * Makes sure an S3 is reachable: EDGETUNE_S3_ENDPOINT if set, else real AWS when credentials are in
 * the environment, else starts s3rver in this process on a free port (data in EDGETUNE_S3_DIR or
 * .edgetune/s3, bucket `edgetune` created if missing), which sdkClient() then uses; child processes
 * reach it through s3ChildEnv(). close() stops it once every caller has closed.
 */
export async function ensureS3(opts: { log?: (line: string) => void; port?: number; dir?: string } = {}): Promise<S3Handle> {
  const log = opts.log ?? ((l: string) => console.error(l));
  if (embedded) {
    embedded.users++;
    return embeddedHandle(embedded);
  }
  const endpoint = s3Endpoint();
  if (endpoint) return { endpoint, embedded: false, close: async () => {} };
  if (hasAwsCredentialsInEnv()) return { embedded: false, close: async () => {} };
  const config = edgetuneConfig();
  const s3 = await startS3rver({
    port: opts.port ?? config.EDGETUNE_S3_PORT ?? 0,
    dir: opts.dir ?? config.EDGETUNE_S3_DIR ?? DEFAULT_S3_DIR,
    buckets: [DEFAULT_BUCKET],
  });
  embedded = { s3, users: 1 };
  log(`edgetune: embedded S3 (s3rver behind a SigV4 guard) at ${s3.endpoint}, data in ${s3.dir}, bucket s3://${DEFAULT_BUCKET}`);
  return embeddedHandle(embedded);
}

/**
 * What a child process (a local training run) needs in its environment to use this process's
 * S3: the embedded S3's endpoint and key pair; nothing when S3 is configured by the environment.
 */
export function s3ChildEnv(): Record<string, string> {
  if (!embedded || edgetuneConfig().EDGETUNE_S3_ENDPOINT) return {};
  const { endpoint, credentials } = embedded.s3;
  return { EDGETUNE_S3_ENDPOINT: endpoint, [ACCESS_KEY_ENV]: credentials.accessKeyId, [SECRET_KEY_ENV]: credentials.secretAccessKey };
}

function embeddedHandle(e: { s3: EmbeddedS3; users: number }): S3Handle {
  let closed = false;
  return {
    endpoint: e.s3.endpoint,
    embedded: true,
    server: e.s3.server,
    async close() {
      if (closed) return;
      closed = true;
      if (--e.users > 0) return;
      if (embedded === e) embedded = undefined;
      for (const [k, c] of clients) {
        if (k.startsWith(`${e.s3.endpoint} `)) {
          c.destroy();
          clients.delete(k);
        }
      }
      await e.s3.close();
    },
  };
}

export interface S3Object {
  body: Buffer;
  etag?: string;
}

/**
 * GET an object's bytes (with retries): without the SDK when staticS3Access() allows. Throws a
 * NoSuchKey error when absent (isNotFound), ObjectTooLargeError above `maxBytes`.
 */
export async function getObject(uri: string, extra: { ifNoneMatch?: string; maxBytes?: number } = {}): Promise<S3Object> {
  const { bucket, key } = parseS3Uri(uri);
  const access = staticS3Access();
  return withRetry(
    async () => {
      if (access && (access.endpoint || isPlainBucket(bucket))) return signedGetObject(access, bucket, key, extra);
      const { sdk, client } = await sdkClient();
      const out = await client.send(new sdk.GetObjectCommand({ Bucket: bucket, Key: key, IfNoneMatch: extra.ifNoneMatch }));
      if (extra.maxBytes !== undefined && (out.ContentLength ?? 0) > extra.maxBytes) {
        (out.Body as { destroy?: () => void } | undefined)?.destroy?.();
        throw new ObjectTooLargeError(`${uri} is ${out.ContentLength} bytes, more than the ${extra.maxBytes} allowed`);
      }
      const body = Buffer.from(await out.Body!.transformToByteArray());
      return { body, etag: out.ETag };
    },
    { label: `GET ${uri}` },
  );
}

/** GET returning undefined when the object does not exist. */
export async function getObjectIfExists(uri: string): Promise<S3Object | undefined> {
  try {
    return await getObject(uri);
  } catch (e) {
    if (isNotFound(e)) return undefined;
    throw e;
  }
}

export async function headObject(uri: string): Promise<{ etag?: string; size?: number } | undefined> {
  const { bucket, key } = parseS3Uri(uri);
  try {
    return await withRetry(
      async () => {
        const { sdk, client } = await sdkClient();
        const out = await client.send(new sdk.HeadObjectCommand({ Bucket: bucket, Key: key }));
        return { etag: out.ETag, size: out.ContentLength };
      },
      { label: `HEAD ${uri}` },
    );
  } catch (e) {
    if (isNotFound(e)) return undefined;
    throw e;
  }
}

export async function putObject(
  uri: string,
  body: Buffer | string,
  extra: Omit<S3Sdk.PutObjectCommandInput, 'Bucket' | 'Key' | 'Body'> = {},
): Promise<{ etag?: string }> {
  const { bucket, key } = parseS3Uri(uri);
  return withRetry(
    async () => {
      const { sdk, client } = await sdkClient();
      const out = await client.send(new sdk.PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ...extra }));
      return { etag: out.ETag };
    },
    { label: `PUT ${uri}` },
  );
}

export interface ListedObject {
  key: string;
  etag: string;
  size: number;
  lastModified?: Date;
}

/** Every object under a prefix (all pages). */
export async function listObjects(
  bucket: string,
  prefix: string,
  opts: { delimiter?: string } = {},
): Promise<{ objects: ListedObject[]; prefixes: string[] }> {
  const objects: ListedObject[] = [];
  const prefixes: string[] = [];
  let token: string | undefined;
  do {
    const page = await withRetry(
      async () => {
        const { sdk, client } = await sdkClient();
        return client.send(
          new sdk.ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token, Delimiter: opts.delimiter }),
        );
      },
      { label: `LIST s3://${bucket}/${prefix}` },
    );
    for (const o of page.Contents ?? []) {
      if (o.Key) objects.push({ key: o.Key, etag: o.ETag ?? '', size: o.Size ?? 0, lastModified: o.LastModified });
    }
    for (const p of page.CommonPrefixes ?? []) if (p.Prefix) prefixes.push(p.Prefix);
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return { objects, prefixes };
}
