// Serializes a plain description of a one-subgraph TFLite model with the flatc-generated schema code
// (npm `flatbuffers` runtime). Buffer 0 is the empty sentinel that tensors without data point to.
import * as flatbuffers from 'flatbuffers';
import {
  ActivationFunctionType,
  AddOptions,
  Buffer,
  BuiltinOperator,
  BuiltinOptions,
  Conv2DOptions,
  DepthwiseConv2DOptions,
  DequantizeOptions,
  FullyConnectedOptions,
  Metadata,
  Model,
  MulOptions,
  Operator,
  OperatorCode,
  Padding,
  PadOptions,
  QuantizationParameters,
  QuantizeOptions,
  ReducerOptions,
  SoftmaxOptions,
  SubGraph,
  Tensor,
  TensorType,
} from './schema/generated/tflite-subset_generated.js';

export { ActivationFunctionType, BuiltinOperator, Padding, TensorType };

export interface Quantization {
  scale: number[];
  zeroPoint: number[];
  /** The axis `scale`/`zeroPoint` run along when there are several (per-channel). */
  quantizedDimension?: number;
  min?: number[];
  max?: number[];
}

export interface TensorSpec {
  name: string;
  shape: number[];
  type: TensorType;
  /** Constant data (little-endian bytes); absent for activations. */
  data?: Uint8Array;
  quantization?: Quantization;
}

export type OpOptions =
  | {
      kind: 'conv2d';
      padding: Padding;
      strideW: number;
      strideH: number;
      activation: ActivationFunctionType;
      dilationW: number;
      dilationH: number;
    }
  | {
      kind: 'depthwise';
      padding: Padding;
      strideW: number;
      strideH: number;
      depthMultiplier: number;
      activation: ActivationFunctionType;
      dilationW: number;
      dilationH: number;
    }
  | { kind: 'fullyConnected'; activation: ActivationFunctionType }
  | { kind: 'add'; activation: ActivationFunctionType }
  | { kind: 'mul'; activation: ActivationFunctionType }
  | { kind: 'softmax'; beta: number }
  | { kind: 'pad' }
  | { kind: 'reducer'; keepDims: boolean }
  | { kind: 'dequantize' }
  | { kind: 'quantize' }
  | { kind: 'none' };

export interface OpSpec {
  code: BuiltinOperator;
  /** Operator version, as TensorFlow's converter would set it for these tensor types. */
  version: number;
  inputs: number[];
  outputs: number[];
  options: OpOptions;
}

export interface ModelSpec {
  description: string;
  tensors: TensorSpec[];
  inputs: number[];
  outputs: number[];
  ops: OpSpec[];
  /** Model.metadata entries (name -> bytes), in order. */
  metadata: { name: string; data: Uint8Array }[];
}

function writeOptions(b: flatbuffers.Builder, o: OpOptions): [BuiltinOptions, flatbuffers.Offset] {
  switch (o.kind) {
    case 'conv2d':
      return [
        BuiltinOptions.Conv2DOptions,
        Conv2DOptions.createConv2DOptions(b, o.padding, o.strideW, o.strideH, o.activation, o.dilationW, o.dilationH),
      ];
    case 'depthwise':
      return [
        BuiltinOptions.DepthwiseConv2DOptions,
        DepthwiseConv2DOptions.createDepthwiseConv2DOptions(
          b,
          o.padding,
          o.strideW,
          o.strideH,
          o.depthMultiplier,
          o.activation,
          o.dilationW,
          o.dilationH,
        ),
      ];
    case 'fullyConnected':
      return [BuiltinOptions.FullyConnectedOptions, FullyConnectedOptions.createFullyConnectedOptions(b, o.activation)];
    case 'add':
      return [BuiltinOptions.AddOptions, AddOptions.createAddOptions(b, o.activation)];
    case 'mul':
      return [BuiltinOptions.MulOptions, MulOptions.createMulOptions(b, o.activation)];
    case 'softmax':
      return [BuiltinOptions.SoftmaxOptions, SoftmaxOptions.createSoftmaxOptions(b, o.beta)];
    case 'pad':
      return [BuiltinOptions.PadOptions, PadOptions.createPadOptions(b)];
    case 'reducer':
      return [BuiltinOptions.ReducerOptions, ReducerOptions.createReducerOptions(b, o.keepDims)];
    case 'dequantize':
      return [BuiltinOptions.DequantizeOptions, DequantizeOptions.createDequantizeOptions(b)];
    case 'quantize':
      return [BuiltinOptions.QuantizeOptions, QuantizeOptions.createQuantizeOptions(b)];
    case 'none':
      return [BuiltinOptions.NONE, 0];
  }
}

function writeQuantization(b: flatbuffers.Builder, q: Quantization): flatbuffers.Offset {
  const min = q.min ? QuantizationParameters.createMinVector(b, q.min) : 0;
  const max = q.max ? QuantizationParameters.createMaxVector(b, q.max) : 0;
  const scale = QuantizationParameters.createScaleVector(b, q.scale);
  const zero = QuantizationParameters.createZeroPointVector(
    b,
    q.zeroPoint.map((z) => BigInt(z)),
  );
  QuantizationParameters.startQuantizationParameters(b);
  if (min) QuantizationParameters.addMin(b, min);
  if (max) QuantizationParameters.addMax(b, max);
  QuantizationParameters.addScale(b, scale);
  QuantizationParameters.addZeroPoint(b, zero);
  QuantizationParameters.addQuantizedDimension(b, q.quantizedDimension ?? 0);
  return QuantizationParameters.endQuantizationParameters(b);
}

/** The .tflite bytes of `spec` (schema version 3, file identifier TFL3). Same spec, same bytes. */
export function serializeModel(spec: ModelSpec): Uint8Array {
  const b = new flatbuffers.Builder(1 << 20);

  // Buffers: 0 is the empty sentinel, then one per constant tensor, then one per metadata entry.
  const bufferData: (Uint8Array | null)[] = [null];
  const tensorBuffer = spec.tensors.map((t) => {
    if (!t.data) return 0;
    bufferData.push(t.data);
    return bufferData.length - 1;
  });
  const metadataBuffer = spec.metadata.map((m) => {
    bufferData.push(m.data);
    return bufferData.length - 1;
  });
  const buffers = bufferData.map((data) => {
    if (!data) {
      Buffer.startBuffer(b);
      return Buffer.endBuffer(b);
    }
    // force_align 16 on Buffer.data: aligned so that a reader may map the weights in place.
    b.startVector(1, data.length, 16);
    for (let i = data.length - 1; i >= 0; i--) b.addInt8(data[i]);
    const vec = b.endVector();
    return Buffer.createBuffer(b, vec);
  });

  const tensors = spec.tensors.map((t, i) => {
    const name = b.createString(t.name);
    const shape = Tensor.createShapeVector(b, t.shape);
    const quant = t.quantization ? writeQuantization(b, t.quantization) : 0;
    Tensor.startTensor(b);
    Tensor.addShape(b, shape);
    Tensor.addType(b, t.type);
    Tensor.addBuffer(b, tensorBuffer[i]);
    Tensor.addName(b, name);
    if (quant) Tensor.addQuantization(b, quant);
    return Tensor.endTensor(b);
  });

  // One OperatorCode per (op, version), in order of first use.
  const codeKeys: string[] = [];
  const codes: { code: BuiltinOperator; version: number }[] = [];
  const opcodeIndex = spec.ops.map((op) => {
    const key = `${op.code}/${op.version}`;
    let i = codeKeys.indexOf(key);
    if (i < 0) {
      codeKeys.push(key);
      codes.push({ code: op.code, version: op.version });
      i = codeKeys.length - 1;
    }
    return i;
  });
  const operatorCodes = codes.map(({ code, version }) => {
    OperatorCode.startOperatorCode(b);
    // Readers before TF 2.4 read only the byte-wide code; later ones take the larger of the two.
    OperatorCode.addDeprecatedBuiltinCode(b, Math.min(code, 127));
    OperatorCode.addVersion(b, version);
    OperatorCode.addBuiltinCode(b, code);
    return OperatorCode.endOperatorCode(b);
  });

  const operators = spec.ops.map((op, i) => {
    const inputs = Operator.createInputsVector(b, op.inputs);
    const outputs = Operator.createOutputsVector(b, op.outputs);
    const [optType, opt] = writeOptions(b, op.options);
    Operator.startOperator(b);
    Operator.addOpcodeIndex(b, opcodeIndex[i]);
    Operator.addInputs(b, inputs);
    Operator.addOutputs(b, outputs);
    if (optType !== BuiltinOptions.NONE) {
      Operator.addBuiltinOptionsType(b, optType);
      Operator.addBuiltinOptions(b, opt);
    }
    return Operator.endOperator(b);
  });

  const subgraphName = b.createString('main');
  const subgraph = SubGraph.createSubGraph(
    b,
    SubGraph.createTensorsVector(b, tensors),
    SubGraph.createInputsVector(b, spec.inputs),
    SubGraph.createOutputsVector(b, spec.outputs),
    SubGraph.createOperatorsVector(b, operators),
    subgraphName,
  );
  const metadata = spec.metadata.map((m, i) => Metadata.createMetadata(b, b.createString(m.name), metadataBuffer[i]));

  const description = b.createString(spec.description);
  const model = Model.createModel(
    b,
    3,
    Model.createOperatorCodesVector(b, operatorCodes),
    Model.createSubgraphsVector(b, [subgraph]),
    description,
    Model.createBuffersVector(b, buffers),
    Model.createMetadataBufferVector(b, []),
    Model.createMetadataVector(b, metadata),
  );
  Model.finishModelBuffer(b, model);
  return b.asUint8Array().slice();
}

/** Reads back what serializeModel wrote (tests, and a structural check of exported files). */
export function readModel(bytes: Uint8Array): Model {
  const bb = new flatbuffers.ByteBuffer(bytes);
  if (!Model.bufferHasIdentifier(bb)) throw new Error('not a TFLite model (file identifier is not TFL3)');
  return Model.getRootAsModel(bb);
}
