// The open-set score shared by training (fitting the threshold) and serving (applying it): the
// cosine distance of a photo's pooled embedding to the nearest class mean. Class means are unit
// vectors (the mean of the L2-normalised training embeddings of a class, normalised again), stored
// with the model as base64 float32 rows.

/** 1 - cos(x, mean) for the nearest of the `means` (rows of `dim`, each unit length). */
export function nearestMeanDistance(x: ArrayLike<number>, means: Float32Array, dim: number): { distance: number; nearest: number } {
  let norm = 0;
  for (let d = 0; d < dim; d++) norm += x[d] * x[d];
  norm = Math.sqrt(norm) || 1;
  let best = Number.POSITIVE_INFINITY;
  let nearest = 0;
  for (let c = 0; c * dim < means.length; c++) {
    let dot = 0;
    for (let d = 0; d < dim; d++) dot += x[d] * means[c * dim + d];
    const dist = 1 - dot / norm;
    if (dist < best) {
      best = dist;
      nearest = c;
    }
  }
  return { distance: best, nearest };
}

export function encodeFloat32(a: Float32Array): string {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64');
}

export function decodeFloat32(b64: string, expectedLength: number): Float32Array {
  const buf = Buffer.from(b64, 'base64');
  if (buf.byteLength !== expectedLength * 4)
    throw new Error(`class means: expected ${expectedLength} float32 values, got ${buf.byteLength} bytes`);
  const out = new Float32Array(expectedLength);
  new Uint8Array(out.buffer).set(buf);
  return out;
}
