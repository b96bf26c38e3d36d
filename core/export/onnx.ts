// ONNX (opset 13, IR 7) written directly from the fused graph, encoded with protobufjs from the
// upstream onnx.proto (v1.12.0, vendored beside this file).
// Input: NHWC float32 RGB 0..255 ([batch, h, w, 3]); one Transpose to NCHW, then the model's own
// preprocessing (x * scale + offset) inside the graph. BatchNorm is already folded; Keras' asymmetric
// stride-2 ZeroPadding is explicit in each Conv's pads. Output: class probabilities in label order
// (2 classes: the model's single sigmoid unit P(classes[1]) becomes [1 - p, p]); 4-D outputs of a
// frozen-part export are transposed back to NHWC.
import { readFileSync } from 'node:fs';
import protobuf from 'protobufjs';
import type { ConvOp, FusedGraph, FusedOp } from '../graph/fused-graph.js';
import { float32ToFloat16Bits } from '../quantize.js';

export const ONNX_OPSET = 13;
export const ONNX_IR_VERSION = 7;

const FLOAT = 1;
const INT64 = 7;
const FLOAT16 = 10;
const ATTR = { FLOAT: 1, INT: 2, INTS: 7 } as const;

let modelType: protobuf.Type | undefined;
/** onnx.ModelProto from the vendored onnx.proto (field names as in the .proto). */
export function onnxModelType(): protobuf.Type {
  if (!modelType) {
    const text = readFileSync(new URL('./onnx.proto', import.meta.url), 'utf8');
    modelType = protobuf.parse(text, { keepCase: true }).root.lookupType('onnx.ModelProto');
  }
  return modelType;
}

export interface OnnxWriteOptions {
  /** float16: float16 kernels (biases and scalars stay float32), each Cast to float32 before use. */
  weights?: 'float32' | 'float16';
  /**
   * Class names in output order. With 2 classes and a single sigmoid output unit, the output is
   * [1 - p, p]; with N classes the model's N softmax outputs are passed through.
   */
  classes?: readonly string[];
  /** metadata_props, in the given order. */
  metadata?: Record<string, string>;
  graphName?: string;
  producerVersion?: string;
  /** float16 mode: weights of these ops (by `weightsId` or dense layer name) stay float32. */
  float32Weights?: (id: string, op: FusedOp) => boolean;
}

interface Attribute {
  name: string;
  type: number;
  i?: number;
  f?: number;
  ints?: number[];
}
interface Node {
  name: string;
  op_type: string;
  input: string[];
  output: string[];
  attribute?: Attribute[];
}
interface Initializer {
  name: string;
  dims: number[];
  data_type: number;
  raw_data: Uint8Array;
}

const ints = (name: string, v: number[]): Attribute => ({ name, type: ATTR.INTS, ints: v });
const int = (name: string, v: number): Attribute => ({ name, type: ATTR.INT, i: v });

function bytesOf(a: Float32Array | Uint16Array | BigInt64Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** HWIO -> OIHW (conv2d); [kh, kw, in, mult] -> [in * mult, 1, kh, kw] (depthwise, group = in). */
function onnxKernel(op: ConvOp): { data: Float32Array; dims: number[]; group: number } {
  const [kh, kw, inC, last] = op.kernelShape;
  const k = op.kernel;
  const out = new Float32Array(k.length);
  if (op.op === 'conv2d') {
    const outC = last;
    for (let o = 0; o < outC; o++)
      for (let i = 0; i < inC; i++)
        for (let y = 0; y < kh; y++)
          for (let x = 0; x < kw; x++) out[((o * inC + i) * kh + y) * kw + x] = k[((y * kw + x) * inC + i) * outC + o];
    return { data: out, dims: [outC, inC, kh, kw], group: 1 };
  }
  const mult = last;
  // tfjs' depthwise output channel c * mult + m reads input channel c: ONNX groups of `mult` outputs per input.
  for (let c = 0; c < inC; c++)
    for (let m = 0; m < mult; m++)
      for (let y = 0; y < kh; y++)
        for (let x = 0; x < kw; x++) out[((c * mult + m) * kh + y) * kw + x] = k[((y * kw + x) * inC + c) * mult + m];
  return { data: out, dims: [inC * mult, 1, kh, kw], group: inC };
}

/** TensorFlow's SAME padding as explicit [top, bottom, left, right]. */
function samePads(inH: number, inW: number, op: ConvOp): [number, number, number, number] {
  const one = (size: number, k: number, s: number, d: number) => {
    const total = Math.max((Math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0);
    return [Math.floor(total / 2), total - Math.floor(total / 2)];
  };
  const [t, b] = one(inH, op.kernelShape[0], op.strides[0], op.dilations[0]);
  const [l, r] = one(inW, op.kernelShape[1], op.strides[1], op.dilations[1]);
  return [t, b, l, r];
}

/** The ONNX model bytes of a fused graph (deterministic: the same graph gives the same bytes). */
export function writeOnnx(graph: FusedGraph, opts: OnnxWriteOptions = {}): Uint8Array {
  const half = opts.weights === 'float16';
  const nodes: Node[] = [];
  const casts: Node[] = [];
  const inits: Initializer[] = [];
  const shapes = new Map<string, number[]>([[graph.input, graph.inputShape]]);
  for (const op of graph.ops) shapes.set(op.out, op.shape);

  const constant = (name: string, data: Float32Array | BigInt64Array, dims: number[]) => {
    inits.push({ name, dims, data_type: data instanceof BigInt64Array ? INT64 : FLOAT, raw_data: bytesOf(data) });
    return name;
  };
  const scalars = new Map<number, string>();
  const scalar = (v: number) => {
    let n = scalars.get(v);
    if (!n) {
      n = constant(`const/${v}`, Float32Array.of(v), []);
      scalars.set(v, n);
    }
    return n;
  };
  /** A weight tensor; float16 mode stores it as float16 and casts it to float32 at the start of the graph. */
  const weight = (name: string, data: Float32Array, dims: number[], op: FusedOp, id: string) => {
    if (!half || opts.float32Weights?.(id, op)) return constant(name, data, dims);
    const h = new Uint16Array(data.length);
    for (let i = 0; i < data.length; i++) h[i] = float32ToFloat16Bits(data[i]);
    inits.push({ name: `${name}/float16`, dims, data_type: FLOAT16, raw_data: bytesOf(h) });
    casts.push({ name: `${name}/cast`, op_type: 'Cast', input: [`${name}/float16`], output: [name], attribute: [int('to', FLOAT)] });
    return name;
  };

  // Values are NCHW inside the graph; graph outputs of rank 4 get a Transpose back to NHWC.
  const classes = opts.classes;
  const lastOp = graph.ops.at(-1);
  const binary =
    classes?.length === 2 &&
    graph.outputs.length === 1 &&
    lastOp?.out === graph.outputs[0] &&
    lastOp.shape.length === 1 &&
    lastOp.shape[0] === 1 &&
    ((lastOp.op === 'activation' && lastOp.activation === 'sigmoid') || (lastOp.op === 'dense' && lastOp.activation === 'sigmoid'));
  if (classes && !binary) {
    const width = graph.outputs.length === 1 ? shapes.get(graph.outputs[0]) : undefined;
    if (width?.length !== 1 || width[0] !== classes.length) {
      throw new Error(
        `onnx: ${classes.length} classes, but the graph's output is [${width ?? graph.outputs}] (expected one sigmoid unit or ${classes.length} outputs)`,
      );
    }
  }
  const internal = (name: string): string => {
    if (!graph.outputs.includes(name)) return name;
    if (binary) return `${name}/positive`;
    return (shapes.get(name)?.length ?? 0) === 3 ? `${name}/nchw` : name;
  };
  const alias = new Map<string, string>();
  const val = (name: string) => alias.get(name) ?? internal(name);

  let input = graph.input;
  if (graph.inputShape.length === 3) {
    nodes.push({
      name: 'input/nchw',
      op_type: 'Transpose',
      input: [input],
      output: ['input/nchw'],
      attribute: [ints('perm', [0, 3, 1, 2])],
    });
    input = 'input/nchw';
  }
  if (graph.inputRescale) {
    const { scale, offset } = graph.inputRescale;
    nodes.push({ name: 'input/scale', op_type: 'Mul', input: [input, scalar(scale)], output: ['input/scaled'] });
    nodes.push({ name: 'input/offset', op_type: 'Add', input: ['input/scaled', scalar(offset)], output: ['input/rescaled'] });
    input = 'input/rescaled';
  }
  alias.set(graph.input, input);

  const activationNodes = (act: string, x: string, out: string, name: string, rank4: boolean): Node[] => {
    switch (act) {
      case 'relu':
        return [{ name, op_type: 'Relu', input: [x], output: [out] }];
      case 'relu6':
        return [{ name, op_type: 'Clip', input: [x, scalar(0), scalar(6)], output: [out] }];
      case 'sigmoid':
        return [{ name, op_type: 'Sigmoid', input: [x], output: [out] }];
      case 'tanh':
        return [{ name, op_type: 'Tanh', input: [x], output: [out] }];
      case 'softmax':
        return [{ name, op_type: 'Softmax', input: [x], output: [out], attribute: [int('axis', rank4 ? 1 : -1)] }];
      case 'linear':
        return [{ name, op_type: 'Identity', input: [x], output: [out] }];
    }
    throw new Error(`onnx: activation '${act}' is not supported`);
  };

  for (const op of graph.ops as FusedOp[]) {
    const ins = op.inputs.map(val);
    const out = internal(op.out);
    const rank4 = op.shape.length === 3;
    switch (op.op) {
      case 'conv2d':
      case 'depthwiseConv2d': {
        const inShape = shapes.get(op.inputs[0]) as number[];
        const [t, b, l, r] = op.pad === 'valid' ? [0, 0, 0, 0] : op.pad === 'same' ? samePads(inShape[0], inShape[1], op) : op.pad;
        const k = onnxKernel(op);
        const w = weight(`${op.weightsId}/kernel`, k.data, k.dims, op, op.weightsId);
        const bias = constant(`${op.weightsId}/bias`, op.bias, [op.bias.length]);
        const convOut = op.activation === 'linear' ? out : `${op.out}/conv`;
        nodes.push({
          name: op.out,
          op_type: 'Conv',
          input: [ins[0], w, bias],
          output: [convOut],
          attribute: [
            ints('dilations', op.dilations),
            int('group', k.group),
            ints('kernel_shape', [op.kernelShape[0], op.kernelShape[1]]),
            ints('pads', [t, l, b, r]),
            ints('strides', op.strides),
          ],
        });
        if (op.activation !== 'linear') nodes.push(...activationNodes(op.activation, convOut, out, `${op.out}/activation`, true));
        break;
      }
      case 'add':
        nodes.push({ name: op.out, op_type: ins.length === 2 ? 'Add' : 'Sum', input: ins, output: [out] });
        break;
      case 'rescale':
        nodes.push({ name: `${op.out}/scale`, op_type: 'Mul', input: [ins[0], scalar(op.scale)], output: [`${op.out}/scaled`] });
        nodes.push({ name: op.out, op_type: 'Add', input: [`${op.out}/scaled`, scalar(op.offset)], output: [out] });
        break;
      case 'pad': {
        const [t, b, l, r] = op.pads;
        const pads = constant(`${op.out}/pads`, BigInt64Array.from([0, 0, t, l, 0, 0, b, r].map(BigInt)), [8]);
        nodes.push({ name: op.out, op_type: 'Pad', input: [ins[0], pads], output: [out] });
        break;
      }
      case 'globalAveragePool':
        if (op.keepDims) nodes.push({ name: op.out, op_type: 'GlobalAveragePool', input: ins, output: [out] });
        else {
          nodes.push({ name: `${op.out}/pool`, op_type: 'GlobalAveragePool', input: ins, output: [`${op.out}/pooled`] });
          nodes.push({ name: op.out, op_type: 'Flatten', input: [`${op.out}/pooled`], output: [out], attribute: [int('axis', 1)] });
        }
        break;
      case 'dense': {
        if ((shapes.get(op.inputs[0])?.length ?? 0) !== 1) throw new Error(`onnx: ${op.out} (dense) needs a rank-2 input`);
        const w = weight(`${op.out}/kernel`, op.kernel, op.kernelShape, op, op.out);
        const gemmIn = [ins[0], w, ...(op.bias ? [constant(`${op.out}/bias`, op.bias, [op.bias.length])] : [])];
        const gemmOut = op.activation === 'linear' ? out : `${op.out}/gemm`;
        nodes.push({ name: op.out, op_type: 'Gemm', input: gemmIn, output: [gemmOut] });
        if (op.activation !== 'linear') nodes.push(...activationNodes(op.activation, gemmOut, out, `${op.out}/activation`, false));
        break;
      }
      case 'activation':
        nodes.push(...activationNodes(op.activation, ins[0], out, op.out, rank4));
        break;
      case 'identity':
        if (graph.outputs.includes(op.out)) nodes.push({ name: op.out, op_type: 'Identity', input: ins, output: [out] });
        else alias.set(op.out, ins[0]);
        break;
      case 'layer':
        throw new Error(`onnx: layer '${op.out}' (${op.className}) has no ONNX translation`);
    }
  }

  const outputs: { name: string; dims: (number | string)[] }[] = [];
  for (const name of graph.outputs) {
    const shape = shapes.get(name) as number[];
    if (binary) {
      nodes.push({ name: `${name}/negative`, op_type: 'Sub', input: [scalar(1), val(name)], output: [`${name}/negative`] });
      nodes.push({ name, op_type: 'Concat', input: [`${name}/negative`, val(name)], output: [name], attribute: [int('axis', 1)] });
      outputs.push({ name, dims: ['batch', 2] });
    } else if (shape.length === 3) {
      nodes.push({
        name: `${name}/nhwc`,
        op_type: 'Transpose',
        input: [val(name)],
        output: [name],
        attribute: [ints('perm', [0, 2, 3, 1])],
      });
      outputs.push({ name, dims: ['batch', ...shape] });
    } else {
      if (val(name) !== name) nodes.push({ name: `${name}/out`, op_type: 'Identity', input: [val(name)], output: [name] });
      outputs.push({ name, dims: ['batch', ...shape] });
    }
  }

  const valueInfo = (name: string, dims: (number | string)[]) => ({
    name,
    type: {
      tensor_type: {
        elem_type: FLOAT,
        shape: { dim: dims.map((d) => (typeof d === 'string' ? { dim_param: d } : { dim_value: d })) },
      },
    },
  });
  // Node names must be unique; a later node that took a value's name gets a suffix.
  const allNodes = [...casts, ...nodes];
  const used = new Set<string>();
  for (const n of allNodes) {
    let name = n.name;
    for (let k = 2; used.has(name); k++) name = `${n.name}#${k}`;
    n.name = name;
    used.add(name);
  }
  const model = {
    ir_version: ONNX_IR_VERSION,
    opset_import: [{ domain: '', version: ONNX_OPSET }],
    producer_name: 'edgetune',
    producer_version: opts.producerVersion ?? '',
    graph: {
      name: opts.graphName ?? 'edgetune',
      node: allNodes,
      initializer: inits,
      input: [valueInfo(graph.input, ['batch', ...graph.inputShape])],
      output: outputs.map((o) => valueInfo(o.name, o.dims)),
    },
    metadata_props: Object.entries(opts.metadata ?? {}).map(([key, value]) => ({ key, value })),
  };
  // The plain object already has the message's field types (numbers, strings, Uint8Array), so it is
  // encoded as is: verify + fromObject walked and copied every initializer's bytes again, ~100 ms
  // of a cold start. test/export-onnx.test.ts checks the bytes equal the fromObject encoding.
  return onnxModelType().encode(model).finish();
}

/** The decoded ModelProto (plain object, field names as in onnx.proto), for tests and tools. */
export function readOnnx(bytes: Uint8Array): Record<string, unknown> {
  const type = onnxModelType();
  return type.toObject(type.decode(bytes), { longs: Number, bytes: Array }) as Record<string, unknown>;
}
