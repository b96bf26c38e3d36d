import { readFile } from 'node:fs/promises';
import { createApp } from './app.js';
import { keysFromSecret, parseKeySecret } from './auth.js';
import type { ServeConfig } from './config.js';
import type { Decoder } from './decoder.js';
import { jsonLogger, type Logger, silentLogger } from './logger.js';
import { ModelHolder, type ModelSource } from './model-holder.js';

export interface Runtime {
  app: ReturnType<typeof createApp>;
  holder: ModelHolder;
  /** Resolves when the backend is up and the first model load has finished (or failed). */
  ready: Promise<void>;
}

/**
 * Wires one serving process: model holder (with the tfjs backend, started when a version needs it), API keys and the Hono app. The adapter
 * chooses the decoder (sharp in Node/Lambda, WASM at the edge). The app answers at once (503
 * until the model is in), so a slow model load never blocks health checks.
 */
export function createRuntime(
  config: ServeConfig,
  decode: Decoder,
  opts: {
    log?: Logger;
    source?: ModelSource;
    backendLog?: (line: string) => void;
    loadSecret?: (arn: string) => Promise<string[]>;
    /** Folder of the tfjs .wasm binaries (bundles: their own folder); default: EDGETUNE_WASM_DIR, else node_modules. */
    wasmDir?: string;
  } = {},
): Runtime {
  const log = opts.log ?? (config.logLevel === 'silent' ? silentLogger : jsonLogger());
  const backendLog = opts.backendLog ?? ((line: string) => log.info(line));
  // tfjs is evaluated only for a version served from its layers model: never when serving.onnx serves.
  let backend: typeof import('../core/backend.js') | undefined;
  let started: Promise<void> | undefined;
  const prepareTfjs = () => {
    started ??= import('../core/backend.js').then(async (b) => {
      await b.initBackend('auto', backendLog, { wasmDir: opts.wasmDir });
      backend = b;
    });
    return started;
  };
  const holder = new ModelHolder(config.modelUri, { refreshSeconds: config.refreshSeconds, log, source: opts.source, prepareTfjs });
  const apiKeys = apiKeySource(config, opts.loadSecret);
  const ready = holder.start();
  const app = createApp({
    config,
    holder,
    decode,
    log,
    apiKeys,
    backend: () => {
      const b = backend?.currentBackend();
      return b && backend ? backend.describeBackend(b) : undefined;
    },
  });
  return { app, holder, ready };
}

/**
 * The accepted API keys: API_KEYS as given, else the Secrets Manager secret or the key file, cached
 * for API_KEYS_TTL_SECONDS so a rotated or revoked key takes effect without a restart. A failed
 * fetch is retried on the next request; until a first fetch succeeds, requests get a 503.
 */
export function apiKeySource(
  config: ServeConfig,
  loadSecret: (arn: string) => Promise<string[]> = (arn) => keysFromSecret(arn),
): () => Promise<string[]> {
  const load = config.apiKeysSecretArn
    ? () => loadSecret(config.apiKeysSecretArn as string)
    : config.apiKeysFile
      ? async () => {
          const keys = parseKeySecret(await readFile(config.apiKeysFile as string, 'utf8'));
          if (keys.length === 0) throw new Error(`the key file ${config.apiKeysFile} holds no API keys`);
          return keys;
        }
      : undefined;
  if (config.apiKeys.length > 0 || !load) return () => Promise.resolve(config.apiKeys);
  let cached: { keys: Promise<string[]>; at: number } | undefined;
  return () => {
    if (!cached || Date.now() - cached.at > config.apiKeysTtlSeconds * 1000) {
      const entry = {
        at: Date.now(),
        keys: load().catch((e) => {
          if (cached === entry) cached = undefined;
          throw e;
        }),
      };
      cached = entry;
    }
    return cached.keys;
  };
}
