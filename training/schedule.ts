/** Phase-2 learning-rate schedules, as a function of the optimizer step (so a resumed run continues the same curve). */
export type Schedule = 'constant' | 'cosine';

/** Learning rate for step `step` (0-based) of `totalSteps`: constant, or cosine decay from `lr` towards 0. */
export function learningRateAt(schedule: Schedule, lr: number, step: number, totalSteps: number): number {
  if (schedule === 'constant' || totalSteps <= 0) return lr;
  const t = Math.min(Math.max(step, 0), totalSteps) / totalSteps;
  return 0.5 * lr * (1 + Math.cos(Math.PI * t));
}
