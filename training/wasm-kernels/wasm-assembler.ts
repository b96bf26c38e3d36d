// A tiny WebAssembly assembler: the opcodes, encodings and loop shapes the hand-assembled SIMD
// modules (wasm-simd.ts on the tfjs heap, half-simd.ts on its own memory) are written with.

export const I32 = 0x7f;
export const F32 = 0x7d;
export const V128 = 0x7b;
export const op = {
  block: 0x02,
  loop: 0x03,
  brIf: 0x0d,
  end: 0x0b,
  localGet: 0x20,
  localSet: 0x21,
  localTee: 0x22,
  f32Load: 0x2a,
  f32Store: 0x38,
  i32Const: 0x41,
  i32GeU: 0x4f,
  i32LtU: 0x49,
  i32Add: 0x6a,
  i32And: 0x71,
  i32Shl: 0x74,
  f32Lt: 0x5d,
  f32Gt: 0x5e,
  f32Add: 0x92,
  f32Mul: 0x94,
  f32Div: 0x95,
  f32Sqrt: 0x91,
  select: 0x1b,
  f32Const: 0x43,
  void: 0x40,
};
// SIMD opcodes (0xfd prefix, LEB128 sub-opcode).
export const simd = {
  load: [0xfd, 0x00],
  store: [0xfd, 0x0b],
  f32x4Splat: [0xfd, 0x13],
  f32x4Lt: [0xfd, 0x43],
  f32x4Gt: [0xfd, 0x44],
  and: [0xfd, 0x4e],
  f32x4Add: [0xfd, 0xe4, 0x01],
  f32x4Sub: [0xfd, 0xe5, 0x01],
  f32x4Mul: [0xfd, 0xe6, 0x01],
  f32x4Div: [0xfd, 0xe7, 0x01],
  f32x4Sqrt: [0xfd, 0xe3, 0x01],
  i32x4Splat: [0xfd, 0x11],
  or: [0xfd, 0x50],
  xor: [0xfd, 0x51],
  bitselect: [0xfd, 0x52],
  i32x4LtS: [0xfd, 0x39],
  i32x4GtS: [0xfd, 0x3b],
  i32x4GeS: [0xfd, 0x3f],
  i16x8NarrowI32x4U: [0xfd, 0x86, 0x01],
  i32x4ExtendLowI16x8U: [0xfd, 0xa9, 0x01],
  i32x4ExtendHighI16x8U: [0xfd, 0xaa, 0x01],
  i32x4Shl: [0xfd, 0xab, 0x01],
  i32x4ShrU: [0xfd, 0xad, 0x01],
  i32x4Add: [0xfd, 0xae, 0x01],
  i32x4Sub: [0xfd, 0xb1, 0x01],
};
export const memarg = [0x02, 0x00]; // align 4 bytes (a hint), offset 0

export function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
}

export function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && !(b & 0x40)) || (n === -1 && b & 0x40)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

export function f32(v: number): number[] {
  return [...new Uint8Array(new Float32Array([v]).buffer)];
}

export function section(id: number, body: number[]): number[] {
  return [id, ...uleb(body.length), ...body];
}

export function vec(items: number[][]): number[] {
  return [...uleb(items.length), ...items.flat()];
}

export function name(s: string): number[] {
  return [...uleb(s.length), ...[...s].map((c) => c.charCodeAt(0))];
}

export const get = (i: number) => [op.localGet, i];
export const set = (i: number) => [op.localSet, i];
export const tee = (i: number) => [op.localTee, i];
export const c32 = (v: number) => [op.i32Const, ...sleb(v)];
export const bump = (i: number, by: number) => [...get(i), ...c32(by), op.i32Add, ...set(i)];

/** The byte pointer `ptr` + elements * 4 (elements: code leaving an i32 count). */
export const endAt = (ptr: number, elements: number[]) => [...get(ptr), ...elements, ...c32(2), op.i32Shl, op.i32Add];

/** while (lead < limit) { body; each of `others` += step; lead += step } (lead: the output pointer). */
export function whileBelow(lead: number, others: readonly number[], limit: number, body: number[], step: number): number[] {
  return [
    op.block,
    op.void,
    ...get(lead),
    ...get(limit),
    op.i32GeU,
    op.brIf,
    0,
    op.loop,
    op.void,
    ...body,
    ...others.flatMap((p) => bump(p, step)),
    ...get(lead),
    ...c32(step),
    op.i32Add,
    ...tee(lead),
    ...get(limit),
    op.i32LtU,
    op.brIf,
    0,
    op.end,
    op.end,
  ];
}

/**
 * A module of its own (no imports) built on first use, once per thread, and what `wrap` makes of its
 * exports; undefined where it cannot be built (no WebAssembly, or no SIMD for a SIMD module).
 */
export function moduleOnce<T>(bytes: () => Uint8Array, wrap: (exports: WebAssembly.Exports) => T): () => T | undefined {
  let made: T | null | undefined;
  return () => {
    if (made === undefined) {
      try {
        made = wrap(new WebAssembly.Instance(new WebAssembly.Module(bytes() as Uint8Array<ArrayBuffer>), {}).exports);
      } catch {
        made = null;
      }
    }
    return made ?? undefined;
  };
}

/** A function body for the code section: its locals (count, type) and code, length-prefixed. */
export function funcBody(locals: [number, number][], code: number[]): number[] {
  const fn = [...vec(locals), ...code];
  return [...uleb(fn.length), ...fn];
}
