// The classifier's layer names and in-model preprocessing, without tfjs: serving on onnxruntime and
// the graph walker read them without evaluating tfjs (core/classifier.ts re-exports them).

export const PREPROCESS = { scale: 1 / 127.5, offset: -1 } as const;
/** Names of the layers the classifier adds around the Keras base. */
export const HEAD = {
  preprocess: 'preprocess',
  pool: 'global_average_pooling2d',
  dropout: 'dropout',
  logits: 'logits',
  probabilities: 'probabilities',
} as const;
