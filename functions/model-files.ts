// GET /v1/model/files[/{format}[/{file}]]: the served version's published format files (publish
// --formats), streamed from the version folder, same origin as the API (no S3 CORS, no pre-signed URL).
//
// URL scheme: /v1/model/files/{format} is the format's model file; /v1/model/files/{format}/{file}
// is any file of the format by its name inside the format's folder, so a multi-file format loads by
// URL with relative paths: tf.loadLayersModel('/v1/model/files/tfjs/model.json') fetches its shard
// from /v1/model/files/tfjs/weights.bin. ?version=<v> pins the version: the answer is then immutable
// (cached for a year); without it the answer is the current version's, revalidated by its ETag
// (the file's sha256). A version other than the served one is 404, never another version's bytes.
import { createHash } from 'node:crypto';
import path from 'node:path';
import { createRoute, type OpenAPIHono, z } from '@hono/zod-openapi';
import type { Context, Env } from 'hono';
import { mediaTypeOf, openVersionFile } from '../core/export/format-files.js';
import { FORMAT_IDS, FormatIdSchema } from '../core/export/formats.js';
import type { Manifest, PublishedFormat } from '../core/manifest.js';
import type { Logger } from './logger.js';
import type { ServingModel } from './model-holder.js';
import { HttpProblem, problemResponses } from './problem.js';

export interface ModelFilesDeps<E extends Env> {
  borrowModel: (c: Context<E>) => { serving: ServingModel; release: () => void };
  apiKeys: () => Promise<string[]>;
  log: Logger;
}

const FormatParam = z
  .enum(FORMAT_IDS)
  .openapi({ param: { name: 'format', in: 'path' }, description: 'A format id the served version was published with.', example: 'onnx' });
const FileParam = z.string().openapi({
  param: { name: 'file', in: 'path' },
  description: "A file of the format, by its name inside the format's folder (e.g. tfjs: model.json, weights.bin).",
  example: 'model.json',
});
const VersionQuery = z.object({
  version: z
    .string()
    .optional()
    .openapi({
      param: { name: 'version', in: 'query' },
      description:
        'Pin the version (as listed by GET /v1/model/files): the answer is then cacheable as immutable; another version than the served one is 404.',
    }),
});

export const ModelFilesSchema = z
  .object({
    model: z.object({ name: z.string(), version: z.string() }),
    formats: z.array(
      z.object({
        id: z.string(),
        url: z.string().openapi({ example: '/v1/model/files/onnx/model.onnx?version=20261127T201500Z-3fa2c1d0' }),
        bytes: z.number().int().openapi({ description: 'All files of the format' }),
        sha256: z.string(),
        runtime: z.string(),
        weights: z.string().optional(),
        maxAbsDiff: z.number().optional(),
        top1Agreement: z.number().optional(),
        accuracy: z.number().optional(),
        files: z.array(z.object({ name: z.string(), url: z.string(), bytes: z.number().int(), sha256: z.string() })),
      }),
    ),
  })
  .openapi('ModelFiles');

const fileResponse = {
  description:
    'The file, streamed; ETag is its sha256 (If-None-Match gives 304). Cache-Control is immutable with ?version=<the served version>, no-cache otherwise.',
  content: { 'application/octet-stream': { schema: z.string().openapi({ format: 'binary' }) } },
};

const listRoute = createRoute({
  method: 'get',
  path: '/v1/model/files',
  summary: "The served version's published format files, with their URLs",
  security: [{ bearer: [] }],
  responses: {
    200: { description: 'Formats and files', content: { 'application/json': { schema: ModelFilesSchema } } },
    ...problemResponses(401, 503),
  },
});

const formatRoute = createRoute({
  method: 'get',
  path: '/v1/model/files/{format}',
  summary: "A published format's model file (tfjs: model.json; load multi-file formats from /v1/model/files/{format}/{file})",
  request: { params: z.object({ format: FormatParam }), query: VersionQuery },
  security: [{ bearer: [] }],
  responses: { 200: fileResponse, 304: { description: 'Not modified (If-None-Match)' }, ...problemResponses(401, 404, 503) },
});

const fileRoute = createRoute({
  method: 'get',
  path: '/v1/model/files/{format}/{file}',
  summary: 'One file of a published format, by name (tfjs: model.json and its weight shards)',
  request: { params: z.object({ format: FormatParam, file: FileParam }), query: VersionQuery },
  security: [{ bearer: [] }],
  responses: { 200: fileResponse, 304: { description: 'Not modified (If-None-Match)' }, ...problemResponses(401, 404, 503) },
});

/** A file's name inside its format's folder (model.json, weights.bin, model.onnx, labels.txt). */
const nameIn = (f: PublishedFormat, p: string) => path.posix.relative(path.posix.dirname(f.file), p);

const fileUrl = (id: string, name: string, version: string) =>
  `/v1/model/files/${id}/${encodeURIComponent(name)}?version=${encodeURIComponent(version)}`;

const MAX_MODEL_JSON_BYTES = 8 << 20;

/**
 * The tfjs format of a version published without a formats record (older versions, a local model
 * folder served directly): model.json as it is in the folder, and the manifest's checked weight files.
 */
async function versionTfjs(uri: string, manifest: Manifest): Promise<PublishedFormat | undefined> {
  const file = await openVersionFile(uri, 'model.json');
  if (!file) return undefined;
  const chunks: Uint8Array[] = [];
  let bytes = 0;
  const reader = file.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    bytes += value.byteLength;
    if (bytes > MAX_MODEL_JSON_BYTES) {
      await reader.cancel();
      return undefined;
    }
    chunks.push(value);
  }
  const sha256 = createHash('sha256').update(Buffer.concat(chunks)).digest('hex');
  const modelJson = { path: 'model.json', bytes, sha256 };
  return {
    id: 'tfjs',
    file: 'model.json',
    bytes: bytes + manifest.files.reduce((a, f) => a + f.bytes, 0),
    sha256,
    files: [modelJson, ...manifest.files],
    runtime: 'tfjs',
  };
}

export function mountModelFiles<E extends Env>(app: OpenAPIHono<E>, deps: ModelFilesDeps<E>): void {
  /** The served version's folder and manifest; the model itself is not needed, so the lease ends at once. */
  const served = (c: Context<E>) => {
    const { serving, release } = deps.borrowModel(c);
    release();
    return { uri: serving.uri, version: serving.version, manifest: serving.manifest };
  };

  app.openAPIRegistry.registerPath(listRoute);
  app.get('/v1/model/files', (c) => {
    const { version, manifest } = served(c);
    const formats = (manifest.formats ?? []).map((f) => ({
      id: f.id,
      url: fileUrl(f.id, nameIn(f, f.file), version),
      bytes: f.bytes,
      sha256: f.sha256,
      runtime: f.runtime,
      weights: f.weights,
      maxAbsDiff: f.maxAbsDiff,
      top1Agreement: f.top1Agreement,
      accuracy: f.accuracy,
      files: f.files.map((x) => ({
        name: nameIn(f, x.path),
        url: fileUrl(f.id, nameIn(f, x.path), version),
        bytes: x.bytes,
        sha256: x.sha256,
      })),
    }));
    c.header('cache-control', 'no-cache');
    return c.json({ model: { name: manifest.name, version }, formats });
  });

  let tfjsCache: { version: string; format: Promise<PublishedFormat | undefined> } | undefined;
  const serve = async (c: Context<E>, id: string, name: string | undefined) => {
    if (!FormatIdSchema.safeParse(id).success) throw new HttpProblem(404, `unknown format '${id}'; formats: ${FORMAT_IDS.join(', ')}`);
    const { uri, version, manifest } = served(c);
    const pinned = c.req.query('version');
    if (pinned !== undefined && pinned !== version) {
      throw new HttpProblem(404, `version '${pinned}' is not the one served (${version}); GET /v1/model/files lists the current files`);
    }
    let fmt = manifest.formats?.find((f) => f.id === id);
    // Every version is a tfjs model: one published without formats still serves its own files (the page's in-browser mode).
    if (!fmt && id === 'tfjs' && !manifest.formats) {
      tfjsCache = tfjsCache?.version === version ? tfjsCache : { version, format: versionTfjs(uri, manifest) };
      fmt = await tfjsCache.format;
    }
    if (!fmt) {
      const have = manifest.formats?.map((f) => f.id).join(', ');
      throw new HttpProblem(
        404,
        have
          ? `version ${version} was not published with '${id}' (it has ${have})`
          : `version ${version} was published without format files (publish it again with --formats)`,
      );
    }
    const wanted = name ?? nameIn(fmt, fmt.file);
    const entry = fmt.files.find((f) => nameIn(fmt, f.path) === wanted);
    if (!entry) {
      throw new HttpProblem(
        404,
        `format '${id}' has no file '${wanted}'; its files: ${fmt.files.map((f) => nameIn(fmt, f.path)).join(', ')}`,
      );
    }
    const keys = await deps.apiKeys();
    const headers: Record<string, string> = {
      'content-type': mediaTypeOf(entry.path),
      etag: `"${entry.sha256}"`,
      'x-model-version': version,
      // A pinned version's files never change; with API keys only the client may keep them.
      'cache-control': pinned !== undefined ? `${keys.length ? 'private' : 'public'}, max-age=31536000, immutable` : 'no-cache',
    };
    const inm = c.req.header('if-none-match');
    if (inm?.split(',').some((t) => t.trim().replace(/^W\//, '') === headers.etag)) return new Response(null, { status: 304, headers });
    headers['content-length'] = String(entry.bytes);
    if (c.req.method === 'HEAD') return new Response(null, { status: 200, headers });
    const file = await openVersionFile(uri, entry.path);
    if (!file || (file.bytes !== undefined && file.bytes !== entry.bytes)) {
      await file?.body.cancel();
      deps.log.error('format file missing or of the wrong size', { uri, file: entry.path, expected: entry.bytes, got: file?.bytes });
      throw new HttpProblem(503, `the ${id} file of version ${version} cannot be read from the model store; try again later`);
    }
    return new Response(file.body, { status: 200, headers });
  };

  app.openAPIRegistry.registerPath(formatRoute);
  app.get('/v1/model/files/:format', (c) => serve(c, c.req.param('format'), undefined));
  app.openAPIRegistry.registerPath(fileRoute);
  app.get('/v1/model/files/:format/:file', (c) => serve(c, c.req.param('format'), c.req.param('file')));
}
