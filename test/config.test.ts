import { describe, expect, it } from 'vitest';
import { edgetuneConfig } from '../core/config.js';

describe('EDGETUNE_* configuration', () => {
  it('parses the variables it knows, ignores the rest of the environment, treats empty as unset', () => {
    const c = edgetuneConfig({
      EDGETUNE_WASM_THREADS: '2',
      EDGETUNE_OFFLINE: '1',
      EDGETUNE_S3_PORT: '',
      PATH: '/bin',
      EDGETUNE_OTHER: 'x',
    });
    expect(c.EDGETUNE_WASM_THREADS).toBe(2);
    expect(c.EDGETUNE_OFFLINE).toBe(true);
    expect(c.EDGETUNE_DEBUG).toBe(false);
    expect(c.EDGETUNE_S3_PORT).toBeUndefined();
    expect(c).not.toHaveProperty('PATH');
  });

  it('refuses bad values with the variable name', () => {
    expect(() => edgetuneConfig({ EDGETUNE_WASM_THREADS: 'two' })).toThrow(/invalid EDGETUNE_\* environment: EDGETUNE_WASM_THREADS/);
    expect(() => edgetuneConfig({ EDGETUNE_WASM_THREADS: '0' })).toThrow(/EDGETUNE_WASM_THREADS/);
    expect(() => edgetuneConfig({ EDGETUNE_BACKEND: 'gpu' })).toThrow(/EDGETUNE_BACKEND/);
    expect(() => edgetuneConfig({ EDGETUNE_S3_ENDPOINT: 'localhost:4569' })).toThrow(/EDGETUNE_S3_ENDPOINT/);
    expect(() => edgetuneConfig({ EDGETUNE_OFFLINE: 'yes' })).toThrow(/EDGETUNE_OFFLINE/);
  });
});
