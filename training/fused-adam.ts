// tfjs' Adam with each variable's update as one WASM kernel instead of about a dozen (mul, add,
// square, div, sqrt, ... and their allocations): the same float32 operations in the same order, so
// the same bits (test/fused-adam.test.ts), at a fraction of a phase-2 step's optimizer time. Moments,
// powers, getWeights/setWeights and the learning-rate field are tfjs' own, so checkpoints and
// setLearningRate work unchanged. Off the WASM backend (or without WebAssembly SIMD) it is tfjs' Adam.
import type { NamedTensor, NamedVariableMap } from '@tensorflow/tfjs-core/dist/tensor_types.js';
import { tf } from '../core/tf.js';
import { runKernel } from '../core/tfjs-internals.js';
import { ADAM_UPDATE, type AdamScalars, fusedAdamAvailable } from './wasm-kernels/wasm-grad-kernels.js';

interface AdamState {
  learningRate: number;
  beta1: number;
  beta2: number;
  epsilon: number;
  accBeta1: tf.Variable;
  accBeta2: tf.Variable;
  accumulatedFirstMoment: ({ originalName: string; variable: tf.Variable } | undefined)[];
  accumulatedSecondMoment: ({ originalName: string; variable: tf.Variable } | undefined)[];
}

export class FusedAdamOptimizer extends tf.AdamOptimizer {
  override applyGradients(variableGradients: NamedVariableMap | NamedTensor[]): void {
    if (!fusedAdamAvailable()) {
      super.applyGradients(variableGradients);
      return;
    }
    const s = this as unknown as AdamState;
    const names = Array.isArray(variableGradients) ? variableGradients.map((v) => v.name) : Object.keys(variableGradients);
    const f = Math.fround;
    // tfjs turns each number into a float32 scalar tensor: 1 - beta1 is computed in double first.
    const [a1, a2] = [s.accBeta1.dataSync()[0], s.accBeta2.dataSync()[0]];
    const k: AdamScalars = {
      b1: f(s.beta1),
      c1: f(1 - s.beta1),
      b2: f(s.beta2),
      c2: f(1 - s.beta2),
      oma1: f(1 - a1),
      oma2: f(1 - a2),
      eps: f(s.epsilon),
      negLr: f(-s.learningRate),
    };
    tf.tidy(() => {
      names.forEach((name, i) => {
        const value = tf.engine().registeredVariables[name];
        s.accumulatedFirstMoment[i] ??= { originalName: `${name}/m`, variable: tf.tidy(() => tf.zerosLike(value).variable(false)) };
        s.accumulatedSecondMoment[i] ??= { originalName: `${name}/v`, variable: tf.tidy(() => tf.zerosLike(value).variable(false)) };
        const gradient = Array.isArray(variableGradients) ? variableGradients[i].tensor : variableGradients[name];
        if (gradient == null) return;
        const m = (s.accumulatedFirstMoment[i] as { variable: tf.Variable }).variable;
        const v = (s.accumulatedSecondMoment[i] as { variable: tf.Variable }).variable;
        const [w2, m2, v2] = runKernel(
          ADAM_UPDATE,
          { w: value, g: gradient, m, v },
          k as unknown as Record<string, unknown>,
        ) as unknown as tf.Tensor[];
        m.assign(m2);
        v.assign(v2);
        value.assign(w2);
      });
      s.accBeta1.assign(tf.mul(s.accBeta1, s.beta1));
      s.accBeta2.assign(tf.mul(s.accBeta2, s.beta2));
    });
    this.incrementIterations();
  }
}

/** tf.train.adam(learningRate) with the fused update (beta1 0.9, beta2 0.999, the backend's epsilon). */
export function fusedAdam(learningRate: number): tf.Optimizer {
  return new FusedAdamOptimizer(learningRate, 0.9, 0.999);
}
