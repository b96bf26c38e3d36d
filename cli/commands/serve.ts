import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { ensureS3 } from '../../core/s3/client.js';
import { isS3Uri } from '../../core/s3/uri.js';
import { configFromEnv, MIB } from '../../functions/config.js';
import { isLoopback, startNodeServer } from '../../functions/node.js';
import { ENGINE_HELP, engineOption } from './options.js';

function positiveInt(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`${name} must be a non-negative integer; got '${v}'`);
    return n;
  };
}

export function register(program: Command): void {
  program
    .command('serve')
    .description(
      'Serve the classify API on Node (the same Hono app as Lambda and Lambda@Edge): POST /v1/classify, ' +
        'the upload page at /, the API reference at /docs. Options default to the env vars named in brackets.',
    )
    .option('--model <uri>', 'model folder, s3://bucket/models/<name> (follows current.json) or .../<version> [MODEL_URI]')
    .option('--port <n>', 'port [PORT]', positiveInt('port'), Number(process.env.PORT ?? 3000))
    .option(
      '--host <addr>',
      'address to listen on; another than loopback exposes the API to the network [HOST]',
      process.env.HOST || '127.0.0.1',
    )
    .option(
      '--refresh-seconds <s>',
      're-check the model pointer at most this often [MODEL_REFRESH_SECONDS, 60]',
      positiveInt('refresh seconds'),
    )
    .option('--max-body-mib <n>', 'largest accepted request body [MAX_BODY_BYTES, 8 MiB]', positiveInt('max body'))
    .option(
      '--api-keys-file <path>',
      'file of bearer keys required on /v1, re-read every API_KEYS_TTL_SECONDS [API_KEYS_FILE; or API_KEYS, API_KEYS_SECRET_ARN]',
    )
    .option('--api-keys <list>', 'removed: keys on the command line show in ps; use API_KEYS or --api-keys-file')
    .option('--cors <origins>', "allowed origins, '*' or 'none' [CORS_ORIGINS, *]")
    .option('--engine <name>', ENGINE_HELP, engineOption)
    .addHelpText(
      'after',
      '\nExamples:\n  edgetune serve --model ./models/alpaca\n  edgetune serve --model s3://edgetune/models/alpaca --port 8080\n' +
        '  curl -s --data-binary @photo.jpg -H "content-type: image/jpeg" localhost:3000/v1/classify',
    )
    .action(
      async (o: {
        model?: string;
        port: number;
        host: string;
        refreshSeconds?: number;
        maxBodyMib?: number;
        apiKeys?: string;
        apiKeysFile?: string;
        cors?: string;
        engine?: string;
      }) => {
        try {
          if (o.engine) process.env.EDGETUNE_ENGINE = o.engine;
          if (o.apiKeys !== undefined) {
            throw new Error(
              '--api-keys is no longer accepted: keys on the command line are visible to every user in ps. ' +
                'Put them in the environment (API_KEYS=key1,key2) or in a file (--api-keys-file keys.txt; comma-separated or a JSON array).',
            );
          }
          const env = {
            ...process.env,
            ...(o.model ? { MODEL_URI: o.model } : {}),
            ...(o.refreshSeconds !== undefined ? { MODEL_REFRESH_SECONDS: String(o.refreshSeconds) } : {}),
            ...(o.maxBodyMib !== undefined ? { MAX_BODY_BYTES: String(o.maxBodyMib * MIB) } : {}),
            ...(o.apiKeysFile ? { API_KEYS_FILE: o.apiKeysFile } : {}),
            ...(o.cors ? { CORS_ORIGINS: o.cors } : {}),
          };
          const config = configFromEnv(env);
          if (!config.modelUri) process.stderr.write('edgetune: no model given (--model or MODEL_URI): /v1/classify answers 503\n');
          // s3:// without an endpoint or AWS credentials: the embedded S3 the other commands use.
          const s3 = config.modelUri && isS3Uri(config.modelUri) ? await ensureS3() : undefined;
          const server = await startNodeServer({ config, port: o.port, hostname: o.host, svgLoader: false });
          process.stderr.write(`edgetune: serving on ${server.url} (page /, docs /docs, OpenAPI /openapi.json)\n`);
          const keyed = config.apiKeys.length > 0 || config.apiKeysFile || config.apiKeysSecretArn;
          if (!isLoopback(o.host) && !keyed) {
            process.stderr.write(
              `edgetune: WARNING: serving on ${o.host} without API keys: anyone who can reach this address can use the API. ` +
                'Set API_KEYS or --api-keys-file, or bind 127.0.0.1.\n',
            );
          }
          const stop = async () => {
            await server.close();
            await s3?.close();
            process.exit(0);
          };
          process.once('SIGINT', stop);
          process.once('SIGTERM', stop);
        } catch (e) {
          process.stderr.write(`edgetune: ${(e as Error).message}\n`);
          process.exitCode = 1;
        }
      },
    );
}
