import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { currentBackend } from '../core/backend.js';
import type { LayersModel } from '../core/tf.js';
import { augmentationGrid } from './augment-grid.js';
import { clearCheckpoint } from './checkpoint.js';
import type { DecodedImage } from './dataset.js';
import { modelArtifacts } from './export.js';
import { InProcessExtractor, PoolExtractor, trainingEngine } from './features.js';
import { augmentConfig, type TrainOptions } from './options.js';
import type { Reporter } from './progress.js';
import { type TrainResult, train } from './train.js';

export interface PublishFlags {
  quantize?: 'none' | 'float16' | 'uint8';
  tolerance?: number;
  force?: boolean;
}

/**
 * The training job, as the CLI, `npm start`, the local watcher and the Batch container run it:
 * train -> report -> (publish through the gate).
 */
export async function runTraining(opts: TrainOptions, report: Reporter, publish: PublishFlags = {}) {
  const t0 = performance.now();
  let s3: { close(): Promise<void> } | undefined;
  if ([opts.data, opts.publish, opts.checkpoint].some((u) => u?.startsWith('s3://'))) {
    const { ensureS3 } = await import('../core/s3/client.js');
    s3 = await ensureS3({ log: (message) => report({ type: 'info', message }) });
  }
  try {
    return await trainReportPublish(opts, report, publish, t0);
  } finally {
    await s3?.close();
  }
}

async function trainReportPublish(opts: TrainOptions, report: Reporter, publish: PublishFlags, t0: number) {
  const result = await train(opts, report, await defaultExtractorFactory(opts, report));
  try {
    return await reportExportPublish(result, opts, report, publish, t0);
  } finally {
    result.close();
  }
}

async function reportExportPublish(result: TrainResult, opts: TrainOptions, report: Reporter, publish: PublishFlags, t0: number) {
  const { manifest, outDir } = result;
  const reportDir = path.join(outDir, 'report');
  const gridPath = path.join(outDir, 'augmentation.png');
  const [first] = await result.validation.read(0, 1);
  if (first) await writeFile(gridPath, await augmentationGrid(first, augmentConfig(opts), opts.seed));
  const { writeReport } = await import('./report/index.js');
  const written = await writeReport(outDir, manifest, {
    augmentationGrid: first ? gridPath : undefined,
    review: { data: result.review, dataDir: result.dataDir },
  });
  for (const w of written.warnings) report({ type: 'warning', message: w });
  report({ type: 'info', message: `report: ${path.join(reportDir, 'index.html')}` });

  // The whole validation split, decoded once for the export's and the publish gate's accuracy checks.
  let validationImages: Promise<DecodedImage[]> | undefined;
  const allValidation = () => (validationImages ??= result.validation.read(0, result.validation.length));
  const validationLabels = Array.from(result.validation.labels);
  if (opts.export?.length) {
    const { exportAfterTraining, labelledPixels } = await import('./export-formats.js');
    const cal = result.calibration;
    const images = {
      validation: await allValidation(),
      labels: validationLabels,
      calibration: cal.length
        ? labelledPixels(
            cal,
            cal.map((c) => c.file.label),
            `training split (${cal.length} images)`,
          )
        : undefined,
    };
    await exportAfterTraining(result.model, manifest, outDir, opts.export, images, (message) => report({ type: 'info', message }));
  }

  const final = manifest.metrics.fineTuned ?? manifest.metrics.frozen;
  if (opts.publish) {
    const { publishModel } = await import('../store/model-store.js');
    const { predictProbabilities } = await import('./export.js');
    const { accuracy } = await import('./metrics.js');
    const validation = await allValidation();
    const r = await publishModel(outDir, opts.publish, {
      ...publish,
      // The formats `--export` just wrote (and verified) go into the version with it.
      formats: opts.export,
      evaluate: async (m) => accuracy(await predictProbabilities(m, validation, manifest.classes.length), validationLabels),
      log: (line) => report({ type: 'info', message: line }),
    });
    report({ type: 'info', message: `published ${r.uri} (${r.promoted ? 'promoted' : 'not promoted'}: ${r.reason})` });
  }
  if (opts.checkpoint) await clearCheckpoint(opts.checkpoint);
  // maxRSS covers the worker threads too: they live in this process.
  report({
    type: 'done',
    out: outDir,
    valAccuracy: final.valAccuracy,
    seconds: (performance.now() - t0) / 1000,
    peakRssMiB: process.resourceUsage().maxRSS / 1024,
  });
  return result;
}

/** Worker threads for the frozen forward pass; `--workers 0` keeps it in this thread. */
async function defaultExtractorFactory(opts: TrainOptions, report: Reporter) {
  if (opts.workers === 0) return undefined;
  return async (model: LayersModel, alpha: number) => {
    // tfjs-node(-gpu) runs its own threads or the GPU: the layers themselves are the fast path there
    // (a GPU runs this forward far faster than two CPU cores; onnxruntime's CUDA provider needs CUDA
    // 12, the GPU image has 11.2 for tfjs-node-gpu), so --engine applies to the worker threads only.
    const backend = currentBackend()?.name ?? '';
    if (backend.startsWith('tensorflow')) {
      report({
        type: 'info',
        message: `frozen layers: in this thread on tfjs ${backend} (the GPU when it has one; --engine is for worker threads)`,
      });
      return new InProcessExtractor(model, 32);
    }
    // The pool resolves the same engine itself (the probe is cached) and keeps the fallback's reason
    // for the manifest; a resolved name passed in would lose it.
    const engine = await trainingEngine();
    const ex = new PoolExtractor({ artifacts: await modelArtifacts(model), alpha, inputSize: opts.imageSize, workers: opts.workers });
    const on = engine.name === 'ort' ? 'onnxruntime-node (CPU, 1 intra-op thread each)' : 'tfjs wasm';
    report({
      type: 'info',
      message: `frozen layers: ${opts.workers} worker threads on ${on}${engine.reason ? ` (onnxruntime-node not used: ${engine.reason})` : ''}`,
    });
    return ex;
  };
}
