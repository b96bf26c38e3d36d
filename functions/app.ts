import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { cors } from 'hono/cors';
import { type RequestIdVariables, requestId } from 'hono/request-id';
import { checkImageHeader, decodeFailure } from '../core/image-format.js';
import { publicManifest } from '../core/manifest.js';
import { bearerToken, keyMatches } from './auth.js';
import { mountBrowserAssets } from './browser-assets.js';
import type { ServeConfig } from './config.js';
import type { Decoder } from './decoder.js';
import { rank, scoreBatch } from './inference.js';
import type { LogFields, Logger } from './logger.js';
import { baseMediaType, checkMediaType } from './media.js';
import { mountModelFiles } from './model-files.js';
import type { ModelHolder, ServingModel } from './model-holder.js';
import { type ImagePart, readMultipartImages } from './multipart.js';
import { API_CSP, DOCS_CSP, PAGE_CSP, renderDocs, renderPage, swaggerAsset } from './page.js';
import { HttpProblem, problemResponse, problemResponses } from './problem.js';
import {
  BatchResultSchema,
  BinaryImageSchema,
  ClassifyQuerySchema,
  ClassifyResultSchema,
  HealthSchema,
  IMAGE_MEDIA_TYPES,
  ModelInfoSchema,
  ReadySchema,
  TopQuerySchema,
} from './schemas.js';

export interface AppDeps {
  config: ServeConfig;
  holder: ModelHolder;
  decode: Decoder;
  log: Logger;
  /** Resolves the accepted API keys (env list or Secrets Manager); empty = open API. */
  apiKeys: () => Promise<string[]>;
  /** Name of the tfjs backend, for /readyz. */
  backend?: () => string | undefined;
}

type Env = { Variables: RequestIdVariables & { logFields: LogFields } };

const started = Date.now();

const imageBody = {
  content: {
    ...Object.fromEntries(IMAGE_MEDIA_TYPES.map((t) => [t, { schema: BinaryImageSchema }])),
    'multipart/form-data': { schema: z.object({ image: BinaryImageSchema }) },
  },
  required: true,
  description: 'The image as the raw body, or a multipart form with the field `image`.',
};

const classifyRoute = createRoute({
  method: 'post',
  path: '/v1/classify',
  summary: 'Classify one image',
  request: { query: ClassifyQuerySchema, body: imageBody },
  security: [{ bearer: [] }],
  responses: {
    200: { description: 'Labels with probabilities, best first', content: { 'application/json': { schema: ClassifyResultSchema } } },
    ...problemResponses(400, 401, 413, 415, 422, 503),
  },
});

const batchRoute = createRoute({
  method: 'post',
  path: '/v1/classify/batch',
  summary: 'Classify up to 16 images in one forward pass',
  request: {
    query: ClassifyQuerySchema,
    body: {
      content: { 'multipart/form-data': { schema: z.object({ image: z.array(BinaryImageSchema) }) } },
      required: true,
      description: 'A multipart form with the field `image` repeated once per image.',
    },
  },
  security: [{ bearer: [] }],
  responses: {
    200: { description: 'One result per image, in upload order', content: { 'application/json': { schema: BatchResultSchema } } },
    ...problemResponses(400, 401, 413, 415, 422, 503),
  },
});

const modelRoute = createRoute({
  method: 'get',
  path: '/v1/model',
  summary: 'The model being served (public part of its manifest)',
  security: [{ bearer: [] }],
  responses: {
    200: { description: 'Model metadata', content: { 'application/json': { schema: ModelInfoSchema } } },
    ...problemResponses(401, 503),
  },
});

const healthRoute = createRoute({
  method: 'get',
  path: '/healthz',
  summary: 'Process is alive',
  responses: { 200: { description: 'Alive', content: { 'application/json': { schema: HealthSchema } } } },
});

const readyRoute = createRoute({
  method: 'get',
  path: '/readyz',
  summary: 'Model loaded and warmed up (reports a failed refresh too)',
  responses: {
    200: { description: 'Ready', content: { 'application/json': { schema: ReadySchema } } },
    503: { description: 'No model loaded', content: { 'application/json': { schema: ReadySchema } } },
  },
});

async function readImages(c: Context<Env>, maxCount: number, maxBytes: number): Promise<ImagePart[]> {
  const header = c.req.header('content-type') ?? '';
  const declared = baseMediaType(header);
  if (declared === 'multipart/form-data') return readMultipartImages(c.req.raw, header, { maxFiles: maxCount, maxFileBytes: maxBytes });
  if (maxCount > 1 && declared !== '') {
    throw new HttpProblem(415, `the batch route takes multipart/form-data with one field 'image' per image, not '${declared}'`);
  }
  const verdict = checkMediaType(declared);
  if (!verdict.ok) throw new HttpProblem(415, verdict.detail);
  const bytes = new Uint8Array(await c.req.arrayBuffer());
  if (bytes.byteLength === 0) throw new HttpProblem(400, 'no image: the request body is empty');
  return [{ bytes, type: declared }];
}

/** What a refused or failed image becomes: our own header messages are shown, a decoder's only logged. */
function imageProblem(e: unknown, prefix: string): HttpProblem {
  const err = e as Error;
  const reason = decodeFailure(e);
  if (reason === 'unsupported') return new HttpProblem(415, `${prefix}${err.message}`);
  if (reason === 'too-large') return new HttpProblem(413, `${prefix}${err.message}`);
  if (err?.name === 'ImageDecodeError' && /^cannot decode image: invalid /.test(err.message))
    return new HttpProblem(422, `${prefix}${err.message}`);
  return new HttpProblem(422, `${prefix}cannot decode image: the data is corrupt, truncated or uses a feature we do not decode`);
}

function parseTop(c: Context<Env>): number | undefined {
  const r = TopQuerySchema.safeParse({ top: c.req.query('top') });
  if (!r.success) throw new HttpProblem(400, `invalid query parameter 'top': ${r.error.issues[0]?.message ?? 'expected an integer >= 1'}`);
  return r.data.top;
}

function parseThreshold(c: Context<Env>): number | undefined {
  const raw = c.req.query('threshold');
  if (raw === undefined) return undefined;
  const r = ClassifyQuerySchema.shape.threshold.safeParse(raw.trim() === '' ? Number.NaN : raw);
  if (!r.success)
    throw new HttpProblem(400, `invalid query parameter 'threshold': expected a number from 0 to 2, got '${raw.slice(0, 40)}'`);
  return r.data;
}

export function createApp(deps: AppDeps): OpenAPIHono<Env> {
  const { config, holder, decode, log } = deps;
  const app = new OpenAPIHono<Env>({
    defaultHook: (result, c) => {
      if (!result.success) return problemResponse(400, result.error.issues.map((i) => i.message).join('; '), c.get('requestId'));
    },
  });

  app.use(requestId({ headerName: 'X-Request-Id' }));

  // Every answer: no MIME sniffing, and a CSP that allows nothing unless the route set its own (the page, the docs).
  app.use(async (c, next) => {
    await next();
    c.res.headers.set('x-content-type-options', 'nosniff');
    if (!c.res.headers.has('content-security-policy')) c.res.headers.set('content-security-policy', API_CSP);
  });

  // Access log: one line per request, never the body.
  app.use(async (c, next) => {
    const t0 = performance.now();
    c.set('logFields', {});
    await next();
    log.info('request', {
      requestId: c.get('requestId'),
      method: c.req.method,
      path: c.req.path,
      status: c.res.status,
      ms: Math.round((performance.now() - t0) * 10) / 10,
      contentLength: Number(c.req.header('content-length') ?? 0) || undefined,
      ...c.get('logFields'),
    });
  });

  if (config.corsOrigins.length > 0) {
    app.use(
      cors({
        origin: config.corsOrigins.includes('*') ? '*' : config.corsOrigins,
        allowMethods: ['GET', 'POST', 'OPTIONS'],
        allowHeaders: ['Authorization', 'Content-Type', 'X-Request-Id'],
        exposeHeaders: ['X-Request-Id'],
        maxAge: 600,
      }),
    );
  }

  app.use('/v1/*', async (c, next) => {
    let keys: string[];
    try {
      keys = await deps.apiKeys();
    } catch (e) {
      log.error('cannot load API keys', { requestId: c.get('requestId'), error: (e as Error).message });
      throw new HttpProblem(503, 'API keys are configured but could not be loaded; try again shortly');
    }
    if (keys.length === 0) return next();
    const token = bearerToken(c.req.header('authorization'));
    if (!token || !keyMatches(token, keys)) {
      return problemResponse(
        401,
        token ? 'the API key is not valid' : 'send an API key as Authorization: Bearer <key>',
        c.get('requestId'),
        {
          'www-authenticate': 'Bearer realm="edgetune"',
        },
      );
    }
    return next();
  });

  const limit = bodyLimit({
    maxSize: config.maxBodyBytes,
    onError: (c) => problemResponse(413, `the body is larger than the ${config.maxBodyBytes}-byte limit`, c.get('requestId')),
  });
  app.use('/v1/classify', limit);
  app.use('/v1/classify/*', limit);

  /** Borrows the model (503 when none), kicking off a background refresh check when it is due. */
  const borrowModel = (c: Context<Env>) => {
    holder.maybeRefresh(c.get('requestId'));
    const lease = holder.acquire();
    if (!lease) {
      const s = holder.status();
      const why =
        s.state === 'unconfigured'
          ? 'no model configured (set MODEL_URI or pass --model)'
          : s.state === 'loading'
            ? 'the model is still loading'
            : 'the model could not be loaded; the details are in the server log';
      throw new HttpProblem(503, why);
    }
    return lease;
  };

  const decodeAll = async (c: Context<Env>, parts: ImagePart[], serving: ServingModel) => {
    const opts = { size: serving.manifest.input.size, resize: serving.manifest.input.resize, limitInputPixels: config.maxInputPixels };
    const prefix = (i: number) => (parts.length > 1 ? `image ${i}: ` : '');
    // Every header first: a giant or a foreign format anywhere in a batch is refused before anything decodes.
    let cost = 0;
    for (const [i, p] of parts.entries()) {
      try {
        cost += checkImageHeader(p.bytes, config.maxInputPixels).cost;
      } catch (e) {
        throw imageProblem(e, prefix(i));
      }
    }
    if (cost > config.maxRequestPixels) {
      throw new HttpProblem(
        413,
        `the images add up to ${(cost / 1e6).toFixed(1)} MP of decoding, over the ${(config.maxRequestPixels / 1e6).toFixed(1)} MP limit per request`,
      );
    }
    const images = [];
    for (const [i, p] of parts.entries()) {
      try {
        images.push(await decode(p.bytes, opts));
      } catch (e) {
        log.info('image refused', { requestId: c.get('requestId'), image: i, error: (e as Error)?.message ?? String(e) });
        throw imageProblem(e, prefix(i));
      }
    }
    return images;
  };

  const classify = async (c: Context<Env>, maxCount: number) => {
    const t0 = performance.now();
    const top = parseTop(c);
    const override = parseThreshold(c);
    const lease = borrowModel(c);
    try {
      const { serving } = lease;
      const openSet = serving.openSetStats && serving.predictAll ? serving.manifest.openSet : undefined;
      if (override !== undefined && !openSet) {
        throw new HttpProblem(
          400,
          "'threshold' does not apply: this model has no open-set statistics (models trained before them never answer unknown)",
        );
      }
      const parts = await readImages(c, maxCount, config.maxBodyBytes);
      const t1 = performance.now();
      const images = await decodeAll(c, parts, serving);
      const t2 = performance.now();
      const scored = await scoreBatch(serving, images);
      const t3 = performance.now();
      const ms = (x: number) => Math.round(x * 100) / 100;
      const threshold = override ?? openSet?.threshold;
      const results = scored.map((s) => {
        const predictions = rank(s.probabilities, serving.manifest.classes, top);
        const best = rank(s.probabilities, serving.manifest.classes, 1)[0];
        const unknown = threshold !== undefined && s.distance !== undefined && s.distance > threshold;
        return {
          label: unknown ? null : best.label,
          score: best.score,
          ...(unknown ? { reason: 'unknown' as const } : {}),
          predictions,
          calibrated: s.calibrated,
          ...(threshold !== undefined && s.distance !== undefined ? { openSet: { distance: s.distance, threshold, unknown } } : {}),
        };
      });
      const timings = { decodeMs: ms(t2 - t1), inferenceMs: ms(t3 - t2), totalMs: ms(performance.now() - t0) };
      const model = { name: serving.manifest.name, version: serving.version };
      Object.assign(c.get('logFields'), {
        images: results.length,
        bytes: parts.reduce((n, p) => n + p.bytes.byteLength, 0),
        labels: results.map((r) => r.label),
        modelVersion: serving.version,
        ...timings,
      });
      return { results, model, timings };
    } finally {
      lease.release();
    }
  };

  app.openAPIRegistry.registerPath(classifyRoute);
  app.post('/v1/classify', async (c) => {
    const { results, model, timings } = await classify(c, 1);
    return c.json({ ...results[0], model, timings });
  });

  app.openAPIRegistry.registerPath(batchRoute);
  app.post('/v1/classify/batch', async (c) => {
    const { results, model, timings } = await classify(c, config.maxBatch);
    return c.json({ results, model, timings });
  });

  app.openapi(modelRoute, (c) => {
    const { serving, release } = borrowModel(c);
    release();
    return c.json({ ...publicManifest(serving.manifest), loadedAt: serving.loadedAt }, 200);
  });

  mountModelFiles(app, { borrowModel, apiKeys: deps.apiKeys, log });

  app.openapi(healthRoute, (c) => c.json({ status: 'ok' as const, uptimeSeconds: Math.round((Date.now() - started) / 1000) }, 200));

  app.openapi(readyRoute, (c) => {
    holder.maybeRefresh(c.get('requestId'));
    const s = holder.status();
    const body = {
      ready: s.state === 'ready',
      backend: deps.backend?.(),
      ...(s.model ? { model: s.model } : {}),
      ...(s.lastCheckAt ? { lastCheckAt: s.lastCheckAt } : {}),
      // The failure's message names internal paths and keys: it goes to the log, not to the client.
      ...(s.lastError
        ? { lastError: { ...s.lastError, message: 'the model could not be loaded; the details are in the server log' } }
        : {}),
      ...(s.state !== 'ready' ? { detail: s.state === 'unconfigured' ? 'no model configured' : `model ${s.state}` } : {}),
    };
    return s.state === 'ready' ? c.json(body, 200) : c.json(body, 503);
  });

  app.openAPIRegistry.registerComponent('securitySchemes', 'bearer', {
    type: 'http',
    scheme: 'bearer',
    description: 'Required only when the deployment configures API keys.',
  });
  app.doc31('/openapi.json', {
    openapi: '3.1.0',
    info: {
      title: 'edgetune classify API',
      version: '1.0.0',
      description: 'Classifies photos with a fine-tuned MobileNetV2. Errors are application/problem+json (RFC 9457).',
    },
  });
  app.get('/docs', (c) => {
    c.header('content-security-policy', DOCS_CSP);
    return c.html(renderDocs());
  });
  app.get('/docs/:asset{swagger-ui\\.css|swagger-ui-bundle\\.js|init\\.js}', async (c) => {
    const asset = await swaggerAsset(c.req.param('asset'));
    if (!asset) return problemResponse(404, 'the API reference assets are not installed', c.get('requestId'));
    return c.body(asset.body, 200, { 'content-type': asset.type, 'cache-control': 'public, max-age=86400' });
  });

  app.get('/', (c) => {
    c.header('content-security-policy', PAGE_CSP);
    return c.html(renderPage());
  });
  mountBrowserAssets(app);

  app.notFound((c) => problemResponse(404, `no route ${c.req.method} ${c.req.path}`, c.get('requestId')));

  app.onError((err, c) => {
    const rid = c.get('requestId');
    if (err instanceof HttpProblem) return problemResponse(err.status, err.detail, rid);
    // Body stream failures (client aborted, malformed chunking) are the client's doing.
    if (err instanceof TypeError && /body|stream|aborted/i.test(err.message))
      return problemResponse(400, 'cannot read the request body', rid);
    log.error('unhandled error', { requestId: rid, error: err.message, stack: err.stack });
    return problemResponse(500, 'unexpected server error; the request id is in the logs', rid);
  });

  return app;
}
