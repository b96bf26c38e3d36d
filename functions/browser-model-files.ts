import type { io } from '@tensorflow/tfjs';
import type { Env, Hono } from 'hono';
import { modelJsonText, saveResult, weightBuffer } from '../core/model-json.js';
import { tf } from '../core/tf.js';
import type { ModelHolder } from './model-holder.js';
import { HttpProblem } from './problem.js';

/**
 * FALLBACK until the `formats` work (GET /v1/model/files/{format}) is merged; the lead drops this
 * module (and its one line in app.ts) then. The page loads the tfjs model from exactly
 * `/v1/model/files/tfjs/model.json` and the shard paths relative to it, which that route serves too.
 *
 * Here the served model is re-serialised from memory (the weights the server verified at load) as
 * model.json + one `weights.bin`, cached for the current version only. Behind /v1/* auth like the API.
 */
interface Files {
  version: string;
  modelJson: Uint8Array<ArrayBuffer>;
  weights: Uint8Array<ArrayBuffer>;
}

async function serialize(model: tf.LayersModel): Promise<{ modelJson: string; weights: Buffer }> {
  let captured: io.ModelArtifacts | undefined;
  await model.save(
    tf.io.withSaveHandler(async (a) => {
      captured = a;
      return saveResult(a, weightBuffer(a).byteLength);
    }),
  );
  if (!captured) throw new Error('the model did not serialise');
  return { modelJson: modelJsonText(captured), weights: weightBuffer(captured) };
}

export function mountTfjsModelFallback<E extends Env>(app: Hono<E>, holder: ModelHolder): void {
  let cached: Files | undefined;
  let pending: { version: string; files: Promise<Files> } | undefined;

  const current = async (): Promise<Files> => {
    const lease = holder.acquire();
    if (!lease) throw new HttpProblem(503, 'no model is loaded yet');
    try {
      const { serving } = lease;
      if (cached?.version === serving.version) return cached;
      if (pending?.version !== serving.version) {
        const version = serving.version;
        const files = serialize(serving.model).then(({ modelJson, weights }) => {
          const f: Files = { version, modelJson: new Uint8Array(Buffer.from(modelJson, 'utf8')), weights: new Uint8Array(weights) };
          // A newer version may have been cached meanwhile: keep the newest one asked for last.
          if (pending?.version === version) {
            cached = f;
            pending = undefined;
          }
          return f;
        });
        files.catch(() => {
          if (pending?.version === version) pending = undefined;
        });
        pending = { version, files };
      }
      return await pending.files;
    } finally {
      lease.release();
    }
  };

  app.get('/v1/model/files/tfjs/:file{model\\.json|weights\\.bin}', async (c) => {
    const files = await current();
    const json = c.req.param('file') === 'model.json';
    const body = json ? files.modelJson : files.weights;
    const etag = `"${files.version}"`;
    const headers = {
      etag,
      'cache-control': 'no-cache',
      'x-model-version': files.version,
    };
    if (c.req.header('if-none-match') === etag) return c.body(null, 304, headers);
    return c.body(body, 200, {
      ...headers,
      'content-type': json ? 'application/json' : 'application/octet-stream',
      'content-length': String(body.byteLength),
    });
  });
}
