import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { EpochSchema, MetricsSchema, PhaseSelectionSchema } from '../core/manifest.js';
import { isS3Uri } from '../core/s3/uri.js';
import type { LayersModel } from '../core/tf.js';
import { tf } from '../core/tf.js';

/**
 * Spot-safe training: after every epoch the weights that can change in the current phase, the
 * optimizer state and the history go to one object (S3 or a folder). A retried job with the same
 * run key resumes after the last finished epoch; the augmented views are seeded by epoch, so the
 * resumed run sees exactly what the uninterrupted one would have.
 */
/** What optimizers' getWeights/setWeights exchange (not exported by tfjs). */
export interface NamedTensor {
  name: string;
  tensor: tf.Tensor;
}

const HeaderSchema = z.object({
  runKey: z.string(),
  phase: z.enum(['frozen', 'fineTune']),
  /** Global epochs finished (phase 1 and 2 counted together). */
  epochsDone: z.number().int().min(1),
  history: z.array(EpochSchema),
  frozenMetrics: MetricsSchema.optional(),
  /** Adam's beta1^t and beta2^t as it ran them (setWeights would recompute them slightly differently). */
  adamPowers: z.tuple([z.number(), z.number()]).optional(),
  /** The best-epoch tracking of each phase begun (--restore-best, --patience), with the best epoch's metrics. */
  selection: z
    .object({
      frozen: PhaseSelectionSchema.extend({ bestMetrics: MetricsSchema }).optional(),
      fineTune: PhaseSelectionSchema.extend({ bestMetrics: MetricsSchema }).optional(),
    })
    .optional(),
  tensors: z.array(
    z.object({
      group: z.enum(['weights', 'optimizer', 'best']),
      name: z.string(),
      shape: z.array(z.number().int()),
      offset: z.number().int(),
    }),
  ),
});
export type CheckpointHeader = z.infer<typeof HeaderSchema>;

export interface Checkpoint extends Omit<CheckpointHeader, 'tensors'> {
  weights: Map<string, tf.Tensor>;
  optimizer: NamedTensor[];
  /** The current phase's best-epoch weights (with --restore-best). */
  best: Map<string, tf.Tensor>;
}

const FILE = 'checkpoint.bin';

function location(uri: string): string {
  return isS3Uri(uri) ? `${uri.replace(/\/+$/, '')}/${FILE}` : path.join(uri, FILE);
}

/** header length (u32 LE) | header JSON | float32 data */
function encode(header: CheckpointHeader, data: Float32Array): Buffer {
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(4);
  len.writeUInt32LE(json.length);
  return Buffer.concat([len, json, Buffer.from(data.buffer, data.byteOffset, data.byteLength)]);
}

export async function saveCheckpoint(
  uri: string,
  state: Omit<CheckpointHeader, 'tensors'>,
  weights: ReadonlyMap<string, tf.Tensor>,
  optimizer: readonly NamedTensor[],
  best: ReadonlyMap<string, tf.Tensor> = new Map(),
): Promise<void> {
  const entries = [
    ...[...weights].map(([name, t]) => ({ group: 'weights' as const, name, t })),
    ...optimizer.map(({ name, tensor }) => ({ group: 'optimizer' as const, name, t: tensor })),
    ...[...best].map(([name, t]) => ({ group: 'best' as const, name, t })),
  ];
  const total = entries.reduce((a, e) => a + e.t.size, 0);
  const data = new Float32Array(total);
  const tensors: CheckpointHeader['tensors'] = [];
  let offset = 0;
  for (const e of entries) {
    data.set(await e.t.data<'float32'>(), offset);
    tensors.push({ group: e.group, name: e.name, shape: e.t.shape, offset });
    offset += e.t.size;
  }
  const body = encode({ ...state, tensors }, data);
  const target = location(uri);
  if (isS3Uri(target)) {
    const { putObject } = await import('../core/s3/client.js');
    await putObject(target, body);
  } else {
    await mkdir(path.dirname(target), { recursive: true });
    await writeFile(`${target}.tmp`, body);
    await rename(`${target}.tmp`, target);
  }
}

/** The checkpoint at `uri` if there is one for this run key; another run's checkpoint is ignored. */
export async function loadCheckpoint(uri: string, runKey: string): Promise<Checkpoint | undefined> {
  const target = location(uri);
  let body: Buffer | undefined;
  if (isS3Uri(target)) {
    const { getObjectIfExists } = await import('../core/s3/client.js');
    body = (await getObjectIfExists(target))?.body;
  } else {
    body = await readFile(target).catch(() => undefined);
  }
  if (!body) return undefined;
  const len = body.readUInt32LE(0);
  const header = HeaderSchema.parse(JSON.parse(body.subarray(4, 4 + len).toString('utf8')));
  if (header.runKey !== runKey) return undefined;
  const raw = body.subarray(4 + len);
  const data = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
  const weights = new Map<string, tf.Tensor>();
  const optimizer: NamedTensor[] = [];
  const best = new Map<string, tf.Tensor>();
  for (const t of header.tensors) {
    const size = t.shape.reduce((a, b) => a * b, 1);
    const tensor = tf.tensor(data.subarray(t.offset, t.offset + size), t.shape);
    if (t.group === 'weights') weights.set(t.name, tensor);
    else if (t.group === 'best') best.set(t.name, tensor);
    else optimizer.push({ name: t.name, tensor });
  }
  const { tensors, ...rest } = header;
  void tensors;
  return { ...rest, weights, optimizer, best };
}

export async function clearCheckpoint(uri: string): Promise<void> {
  const target = location(uri);
  if (isS3Uri(target)) {
    const { sdkClient, parseS3Uri } = await import('../core/s3/client.js');
    const { bucket, key } = parseS3Uri(target);
    const { sdk, client } = await sdkClient();
    await client.send(new sdk.DeleteObjectCommand({ Bucket: bucket, Key: key }));
  } else {
    await rm(target, { force: true });
  }
}

/** Weights of the layers that train from `firstLayer` on (by model index), plus the head. */
export function trainableWeights(model: LayersModel, layerNames: ReadonlySet<string>): Map<string, tf.Tensor> {
  const out = new Map<string, tf.Tensor>();
  for (const layer of model.layers) {
    if (!layerNames.has(layer.name)) continue;
    const values = layer.getWeights();
    for (const [i, w] of layer.weights.entries()) out.set(w.originalName, values[i]);
  }
  return out;
}

/** Puts checkpointed weights back into the model by name. */
export function restoreWeights(model: LayersModel, weights: ReadonlyMap<string, tf.Tensor>): void {
  for (const layer of model.layers) {
    if (!layer.weights.some((w) => weights.has(w.originalName))) continue;
    layer.setWeights(layer.weights.map((w, i) => weights.get(w.originalName) ?? layer.getWeights()[i]));
  }
}
