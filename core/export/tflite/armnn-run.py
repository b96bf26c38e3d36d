#!/usr/bin/python3
# Runs a .tflite classifier with Arm NN 20.08 (Debian python3-pyarmnn: its TfLiteParser and the CpuRef
# backend from libarmnn-cpuref-backend22), a second TFLite reader that edgetune did not write.
# usage: armnn-run.py MODEL INPUTS COUNT  (INPUTS: COUNT inputs back to back in the model's input dtype)
# Prints JSON: {"outputs": [[...], ...], "inputType": "..."}.
import json
import sys

import numpy as np
import pyarmnn as ann

model, inputs, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
parser = ann.ITfLiteParser()
net = parser.CreateNetworkFromBinaryFile(model)
in_name = parser.GetSubgraphInputTensorNames(0)[0]
out_name = parser.GetSubgraphOutputTensorNames(0)[0]
in_info = parser.GetNetworkInputBindingInfo(0, in_name)
out_info = parser.GetNetworkOutputBindingInfo(0, out_name)
runtime = ann.IRuntime(ann.CreationOptions())
opt, _ = ann.Optimize(net, [ann.BackendId('CpuRef')], runtime.GetDeviceSpec(), ann.OptimizerOptions())
net_id, _ = runtime.LoadNetwork(opt)
dtype = {ann.DataType_Float32: np.float32, ann.DataType_QAsymmU8: np.uint8, ann.DataType_QAsymmS8: np.int8}[in_info[1].GetDataType()]
shape = tuple(in_info[1].GetShape()[i] for i in range(in_info[1].GetNumDimensions()))
data = np.fromfile(inputs, dtype=dtype).reshape((count,) + shape[1:])
rows = []
for i in range(count):
    x = data[i : i + 1]
    out = ann.make_output_tensors([out_info])
    runtime.EnqueueWorkload(net_id, ann.make_input_tensors([in_info], [x]), out)
    rows.append(ann.workload_tensors_to_ndarray(out)[0].reshape(-1).astype(float).tolist())
print(json.dumps({"outputs": rows, "inputType": np.dtype(dtype).name}))
