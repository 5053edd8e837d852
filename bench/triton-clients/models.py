#!/usr/bin/env python3
"""Write a model repository with the models Triton's example clients ask for, as ONNX models kiln serves
(kiln's own stand-ins for Triton's test models: same names, inputs, outputs and behaviour).

    simple, simple_int8          INPUT0 + INPUT1 -> OUTPUT0, INPUT0 - INPUT1 -> OUTPUT1 ([16], batched)
    simple_string                the same on strings of decimal integers (Cast string <-> int32)
    simple_identity              BYTES identity
    custom_identity_int32        INT32 identity
    simple_sequence              sequence batching: OUTPUT = INPUT + START (the control tensor)
    densenet_onnx                an image classifier: data_0 [3,224,224] -> fc6_1 [1000,1,1], labels
    preprocess_inception_ensemble (with --ensemble) encoded image bytes -> kiln_image -> a batched classifier

usage: models.py REPO [--ensemble]      needs numpy and onnx (Debian: python3-numpy python3-onnx)
"""
import os, sys, numpy as np
from onnx import helper, TensorProto as T, numpy_helper, save
R = sys.argv[1]
def put(name, graph, cfg, opset=17, files=None):
    d = os.path.join(R, name, "1"); os.makedirs(d, exist_ok=True)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]); m.ir_version = 8
    save(m, os.path.join(d, "model.onnx"))
    open(os.path.join(R, name, "config.pbtxt"), "w").write(cfg)
    for k, v in (files or {}).items(): open(os.path.join(R, name, k), "w").write(v)
def addsub(name, dt, tname, extra=""):
    i0 = helper.make_tensor_value_info("INPUT0", dt, ["b", 16]); i1 = helper.make_tensor_value_info("INPUT1", dt, ["b", 16])
    o0 = helper.make_tensor_value_info("OUTPUT0", dt, ["b", 16]); o1 = helper.make_tensor_value_info("OUTPUT1", dt, ["b", 16])
    g = helper.make_graph([helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"]), helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"])], name, [i0, i1], [o0, o1])
    cfg = f'name: "{name}"\nmax_batch_size: 8\n' + "".join(f'{k} {{ name: "{n}" data_type: {tname} dims: [ 16 ] }}\n' for k, n in [("input","INPUT0"),("input","INPUT1"),("output","OUTPUT0"),("output","OUTPUT1")]) + extra
    put(name, g, cfg)
addsub("simple", T.INT32, "TYPE_INT32")
addsub("simple_int8", T.INT8, "TYPE_INT8")
# simple_string: strings of ints in, strings out
i0 = helper.make_tensor_value_info("INPUT0", T.STRING, ["b", 16]); i1 = helper.make_tensor_value_info("INPUT1", T.STRING, ["b", 16])
o0 = helper.make_tensor_value_info("OUTPUT0", T.STRING, ["b", 16]); o1 = helper.make_tensor_value_info("OUTPUT1", T.STRING, ["b", 16])
g = helper.make_graph([helper.make_node("Cast", ["INPUT0"], ["a"], to=T.INT32), helper.make_node("Cast", ["INPUT1"], ["b"], to=T.INT32),
    helper.make_node("Add", ["a", "b"], ["s"]), helper.make_node("Sub", ["a", "b"], ["d"]),
    helper.make_node("Cast", ["s"], ["OUTPUT0"], to=T.STRING), helper.make_node("Cast", ["d"], ["OUTPUT1"], to=T.STRING)], "simple_string", [i0, i1], [o0, o1])
put("simple_string", g, 'name: "simple_string"\nmax_batch_size: 8\n' + "".join(f'{k} {{ name: "{n}" data_type: TYPE_STRING dims: [ 16 ] }}\n' for k, n in [("input","INPUT0"),("input","INPUT1"),("output","OUTPUT0"),("output","OUTPUT1")]))
# simple_identity: BYTES identity
g = helper.make_graph([helper.make_node("Identity", ["INPUT0"], ["OUTPUT0"])], "simple_identity", [helper.make_tensor_value_info("INPUT0", T.STRING, ["b", "n"])], [helper.make_tensor_value_info("OUTPUT0", T.STRING, ["b", "n"])])
put("simple_identity", g, 'name: "simple_identity"\nmax_batch_size: 8\ninput { name: "INPUT0" data_type: TYPE_STRING dims: [ -1 ] }\noutput { name: "OUTPUT0" data_type: TYPE_STRING dims: [ -1 ] }\n')
# custom_identity_int32
g = helper.make_graph([helper.make_node("Identity", ["INPUT0"], ["OUTPUT0"])], "custom_identity_int32", [helper.make_tensor_value_info("INPUT0", T.INT32, ["b", "n"])], [helper.make_tensor_value_info("OUTPUT0", T.INT32, ["b", "n"])])
put("custom_identity_int32", g, 'name: "custom_identity_int32"\nmax_batch_size: 1024\ninput { name: "INPUT0" data_type: TYPE_INT32 dims: [ -1 ] }\noutput { name: "OUTPUT0" data_type: TYPE_INT32 dims: [ -1 ] }\n')
# simple_sequence: OUTPUT = INPUT + START
g = helper.make_graph([helper.make_node("Add", ["INPUT", "START"], ["OUTPUT"])], "simple_sequence",
    [helper.make_tensor_value_info("INPUT", T.INT32, ["b", 1]), helper.make_tensor_value_info("START", T.INT32, ["b", 1])], [helper.make_tensor_value_info("OUTPUT", T.INT32, ["b", 1])])
put("simple_sequence", g, '''name: "simple_sequence"
max_batch_size: 8
sequence_batching {
  max_sequence_idle_microseconds: 5000000
  control_input [ { name: "START" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] } ]
}
input { name: "INPUT" data_type: TYPE_INT32 dims: [ 1 ] }
output { name: "OUTPUT" data_type: TYPE_INT32 dims: [ 1 ] }
''')
# densenet_onnx stand-in: data_0 [3,224,224] -> fc6_1 [1000,1,1]
rng = np.random.default_rng(0)
W = numpy_helper.from_array(rng.standard_normal((16, 3, 7, 7)).astype(np.float32) * 0.05, "W")
F = numpy_helper.from_array(rng.standard_normal((1000, 16, 1, 1)).astype(np.float32) * 0.1, "F")
sh = numpy_helper.from_array(np.array([1, 3, 224, 224], np.int64), "sh")
osh = numpy_helper.from_array(np.array([1000, 1, 1], np.int64), "osh")
g = helper.make_graph([helper.make_node("Reshape", ["data_0", "sh"], ["x"]), helper.make_node("Conv", ["x", "W"], ["c"], strides=[4, 4]),
    helper.make_node("Relu", ["c"], ["r"]), helper.make_node("GlobalAveragePool", ["r"], ["p"]), helper.make_node("Conv", ["p", "F"], ["f"]),
    helper.make_node("Softmax", ["f"], ["sm"], axis=1), helper.make_node("Reshape", ["sm", "osh"], ["fc6_1"])], "densenet_onnx",
    [helper.make_tensor_value_info("data_0", T.FLOAT, [3, 224, 224])], [helper.make_tensor_value_info("fc6_1", T.FLOAT, [1000, 1, 1])], initializer=[W, F, sh, osh])
labels = "".join(f"CLASS_{i}\n" for i in range(1000))
put("densenet_onnx", g, 'name: "densenet_onnx"\nmax_batch_size: 0\ninput { name: "data_0" data_type: TYPE_FP32 format: FORMAT_NCHW dims: [ 3, 224, 224 ] }\noutput { name: "fc6_1" data_type: TYPE_FP32 dims: [ 1000, 1, 1 ] label_filename: "densenet_labels.txt" }\n', files={"densenet_labels.txt": labels})
if "--ensemble" not in sys.argv[2:]:
    sys.exit(0)
rng = np.random.default_rng(0)
W = numpy_helper.from_array(rng.standard_normal((16, 3, 7, 7)).astype(np.float32) * 0.05, "W")
F = numpy_helper.from_array(rng.standard_normal((1000, 16, 1, 1)).astype(np.float32) * 0.1, "F")
g = helper.make_graph([helper.make_node("Conv", ["input", "W"], ["c"], strides=[4, 4]),
    helper.make_node("Relu", ["c"], ["r"]), helper.make_node("GlobalAveragePool", ["r"], ["p"]), helper.make_node("Conv", ["p", "F"], ["f"]),
    helper.make_node("Softmax", ["f"], ["sm"], axis=1), helper.make_node("Flatten", ["sm"], ["output"])], "inception_cls",
    [helper.make_tensor_value_info("input", T.FLOAT, ["b", 3, 224, 224])], [helper.make_tensor_value_info("output", T.FLOAT, ["b", 1000])], initializer=[W, F])
d = os.path.join(R, "inception_cls", "1"); os.makedirs(d, exist_ok=True)
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]); m.ir_version = 8; save(m, os.path.join(d, "model.onnx"))
open(os.path.join(R, "inception_cls", "config.pbtxt"), "w").write('name: "inception_cls"\nmax_batch_size: 8\ninput { name: "input" data_type: TYPE_FP32 format: FORMAT_NCHW dims: [ 3, 224, 224 ] }\noutput { name: "output" data_type: TYPE_FP32 dims: [ 1000 ] label_filename: "labels.txt" }\n')
open(os.path.join(R, "inception_cls", "labels.txt"), "w").write("".join(f"CLASS_{i}\n" for i in range(1000)))
os.makedirs(os.path.join(R, "image_preprocess", "1"), exist_ok=True)
open(os.path.join(R, "image_preprocess", "config.pbtxt"), "w").write('''name: "image_preprocess"
platform: "kiln_image"
max_batch_size: 8
input [ { name: "INPUT" data_type: TYPE_STRING dims: [ 1 ] } ]
output [ { name: "OUTPUT" data_type: TYPE_FP32 dims: [ 3, 224, 224 ] } ]
parameters { key: "mean" value { string_value: "0.5,0.5,0.5" } }
parameters { key: "std" value { string_value: "0.5,0.5,0.5" } }
''')
os.makedirs(os.path.join(R, "preprocess_inception_ensemble", "1"), exist_ok=True)
open(os.path.join(R, "preprocess_inception_ensemble", "config.pbtxt"), "w").write('''name: "preprocess_inception_ensemble"
platform: "ensemble"
max_batch_size: 8
input [ { name: "INPUT" data_type: TYPE_STRING dims: [ 1 ] } ]
output [ { name: "OUTPUT" data_type: TYPE_FP32 dims: [ 1000 ] } ]
ensemble_scheduling {
  step [
    { model_name: "image_preprocess" model_version: -1 input_map { key: "INPUT" value: "INPUT" } output_map { key: "OUTPUT" value: "preprocessed_image" } },
    { model_name: "inception_cls" model_version: -1 input_map { key: "input" value: "preprocessed_image" } output_map { key: "output" value: "OUTPUT" } }
  ]
}
''')
