// Child process of test/serving-onnx-no-tfjs.test.ts: serves MODEL_URI (engine EDGETUNE_ENGINE)
// through the serving runtime, classifies one JPEG, and prints what served it and whether tfjs-core
// was evaluated (it registers its engine as globalThis._tfengine when it is).
import sharp from 'sharp';
import { decodeImage } from '../../core/image.js';
import { configFromEnv } from '../../functions/config.js';
import { memoryLogger } from '../../functions/logger.js';
import { createRuntime } from '../../functions/runtime.js';

const log = memoryLogger();
const rt = createRuntime(configFromEnv(), decodeImage, { log });
await rt.ready;
const photo = await sharp({ create: { width: 80, height: 60, channels: 3, background: { r: 150, g: 90, b: 40 } } })
  .jpeg()
  .toBuffer();
const res = await rt.app.request('/v1/classify', {
  method: 'POST',
  body: new Uint8Array(photo),
  headers: { 'content-type': 'image/jpeg' },
});
await res.arrayBuffer();
process.stdout.write(
  `${JSON.stringify({
    status: res.status,
    runtime: log.entries.find((e) => e.msg === 'model loaded')?.runtime,
    warnings: log.entries.filter((e) => e.level !== 'info').map((e) => e.msg),
    tfjsEvaluated: '_tfengine' in globalThis,
  })}\n`,
);
rt.holder.dispose();
process.exit(0);
