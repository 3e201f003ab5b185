"""MLPerf Tiny's published reference models, converted to float ONNX as a Keras user would.

The models are MLCommons' (https://github.com/mlcommons/tiny, Apache-2.0; see NOTICE in this
folder), from benchmark/training/*/trained_models at commit
1afd2c9820f795965a6134facd0b4dfae41ef23f:

    ic_resnet8          image_classification/trained_models/pretrainedResnet.h5   (Keras H5)
    kws_dscnn           keyword_spotting/trained_models/kws_ref_model/            (SavedModel)
    vww_mobilenet_025   visual_wake_words/trained_models/vww_96.h5                (Keras H5)

They were saved by TensorFlow 2.3-era Keras; Keras 3 cannot read them (its H5 reader refuses
the DepthwiseConv2D config, and it reads no SavedModel), so they are loaded with tf_keras, the
Keras 2 that TensorFlow ships for such models (TF_USE_LEGACY_KERAS=1), and converted with
`tf2onnx.convert.from_keras(model, opset=13)`, as its README shows. tf2onnx folds the
BatchNormalization layers into the convolutions and writes the NHWC input as a Transpose to
NCHW (a Reshape for the one-channel KWS input).

    python3.11 -m venv /work/tfvenv
    /work/tfvenv/bin/pip install tensorflow-cpu==2.21.0 tf_keras==2.21.0 tf2onnx==1.17.0 \
        onnx==1.23.2 onnxruntime==1.32.0 numpy==2.4.6
    # the models, from a checkout of github.com/mlcommons/tiny (not committed here):
    /work/tfvenv/bin/python onnx/tests/data/mlperf_tiny/convert.py /path/to/mlcommons/tiny
    # optionally, synthetic CSV data for `kiln import --data` (not committed):
    /work/tfvenv/bin/python onnx/tests/data/mlperf_tiny/convert.py /path/to/tiny --csv DIR

Writes NAME.onnx and NAME.expected.json for each model. The expected outputs are onnxruntime's
(CPU, graph optimizations disabled) on a few synthetic inputs, checked against Keras's own
`model(x, training=False)` within 1e-5 + 1e-5 |value|. The inputs are synthetic, in each
model's input range, in the model's own NHWC order (a row of a Keras user's data):

    ic_resnet8          [4, 32, 32, 3]  raw pixel values 0..255 (the reference model is trained
                        on unscaled CIFAR-10 pixels): a colour gradient, then 3 seeded uniform
                        random images
    kws_dscnn           [4, 49, 10, 1]  MFCC-like values: a smooth pattern, then 3 seeded
                        uniform integers in [-32, 32] (not features of real speech)
    vww_mobilenet_025   [2, 96, 96, 3]  pixels scaled to [0, 1] (the training script's
                        rescale=1/255) on a grid of 1/32: a gradient, then one seeded random
                        image (two rows keep the file small: 27,648 values each)

With --csv DIR it also writes DIR/NAME.csv: ROWS seeded random inputs of the same kind, one
per line in NHWC order (the order of the ONNX input and of a Keras user's data), then the
label the float model (onnxruntime) gives them, so `kiln import` and `kiln quantize` have data
with the right columns; their "accuracy" is agreement with the float model.
"""

import argparse
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["TF_USE_LEGACY_KERAS"] = "1"

import numpy as np
import onnx
import onnxruntime
import tensorflow as tf
import tf2onnx
import tf_keras

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "import"))
from common import write_expected  # noqa: E402

MODELS = {
    "ic_resnet8": "benchmark/training/image_classification/trained_models/pretrainedResnet.h5",
    "kws_dscnn": "benchmark/training/keyword_spotting/trained_models/kws_ref_model",
    "vww_mobilenet_025": "benchmark/training/visual_wake_words/trained_models/vww_96.h5",
}


def gradient(h, w, c, top):
    """A smooth image: channel k ramps along rows, columns or both."""
    y = np.linspace(0.0, 1.0, h)[:, None]
    x = np.linspace(0.0, 1.0, w)[None, :]
    planes = [y + 0 * x, 0 * y + x, (y + x) / 2]
    return np.stack([planes[k % 3] for k in range(c)], axis=-1) * top


def inputs(name, rng, rows):
    """`rows` synthetic inputs of model `name` (NHWC, float32); the first is smooth unless
    `rows` is used for CSV data."""
    if name == "ic_resnet8":
        first = np.round(gradient(32, 32, 3, 255.0))
        rest = rng.integers(0, 256, size=(rows, 32, 32, 3))
    elif name == "kws_dscnn":
        t = np.arange(49)[:, None]
        k = np.arange(10)[None, :]
        first = np.round(20.0 * np.sin(t / 6.0 + k) - 2.0 * k)[..., None]
        rest = rng.integers(-32, 33, size=(rows, 49, 10, 1))
    else:
        first = np.round(gradient(96, 96, 3, 32.0)) / 32.0
        rest = rng.integers(0, 33, size=(rows, 96, 96, 3)) / 32.0
    return first[None].astype(np.float32), rest.astype(np.float32)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tiny", type=pathlib.Path, help="a checkout of mlcommons/tiny")
    parser.add_argument("--csv", type=pathlib.Path, help="also write synthetic CSV data here")
    parser.add_argument("--rows", type=int, default=400, help="rows per CSV file")
    args = parser.parse_args()
    versions = (f"tf2onnx {tf2onnx.__version__} from_keras opset 13, tensorflow {tf.__version__}, "
                f"tf_keras {tf_keras.__version__}, onnx {onnx.__version__}")
    for index, (name, relative) in enumerate(MODELS.items()):
        model = tf_keras.models.load_model(args.tiny / relative, compile=False)
        onnx_model, _ = tf2onnx.convert.from_keras(model, opset=13)
        path = HERE / f"{name}.onnx"
        onnx.save(onnx_model, path)
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
        session = onnxruntime.InferenceSession(str(path), options,
                                               providers=["CPUExecutionProvider"])
        input_name = session.get_inputs()[0].name
        output_names = [o.name for o in session.get_outputs()]
        rng = np.random.default_rng(20250 + index)
        first, rest = inputs(name, rng, 1 if name == "vww_mobilenet_025" else 3)
        x = np.concatenate([first, rest])
        ours = dict(zip(output_names, session.run(output_names, {input_name: x})))
        keras = model(x, training=False).numpy()
        for key, value in ours.items():
            worst = np.max(np.abs(value - keras) - 1e-5 * np.abs(keras))
            assert worst <= 1e-5, f"{name} {key}: onnxruntime and Keras differ by {worst}"
            print(name, key, "onnxruntime vs Keras: max |diff|", np.max(np.abs(value - keras)))
            print(name, key, "outputs", np.round(value, 4).tolist())
        write_expected(HERE / f"{name}.expected.json",
                       f"{versions}; outputs by onnxruntime {onnxruntime.__version__}",
                       {input_name: x}, ours,
                       notes=("onnxruntime CPU, graph optimizations disabled; Keras "
                              "model(x, training=False) agrees within 1e-5; synthetic inputs "
                              "(convert.py), NHWC"))
        print(name, "params (Keras, BatchNormalization unfolded)", model.count_params(),
              "ops", [n.op_type for n in onnx_model.graph.node][:3], "...",
              path.stat().st_size, "bytes")
        if args.csv:
            args.csv.mkdir(parents=True, exist_ok=True)
            _, rows = inputs(name, np.random.default_rng(7 + index), args.rows)
            probabilities = session.run(output_names, {input_name: rows})[0]
            labels = probabilities.argmax(axis=1)
            table = np.concatenate([rows.reshape(len(rows), -1), labels[:, None]], axis=1)
            fmt = ["%.6g"] * (table.shape[1] - 1) + ["%d"]
            np.savetxt(args.csv / f"{name}.csv", table, delimiter=",", fmt=fmt)
            print(name, "csv", args.csv / f"{name}.csv", table.shape,
                  "label counts", np.bincount(labels, minlength=probabilities.shape[1]).tolist())


if __name__ == "__main__":
    main()
