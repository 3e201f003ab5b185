"""Fixture from TensorFlow/Keras through tf2onnx: a Keras Dense model on the digits with a
Rescaling input layer, a BatchNormalization after the first Dense, and a softmax output.

    python3.11 -m venv /tmp/venv-import-tf
    /tmp/venv-import-tf/bin/pip install tensorflow-cpu==2.21.0 tf2onnx==1.17.0 onnx==1.23.2
    /tmp/venv-import-tf/bin/python onnx/tests/data/import/make_keras.py

Writes keras_dense.onnx and keras_dense.expected.json (Keras's own predictions on
REFERENCE_ROWS).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import onnx
import tensorflow as tf
import tf2onnx

from common import HERE, REFERENCE_ROWS, digits, write_expected

tf.keras.utils.set_random_seed(0)
features, labels = digits()
model = tf.keras.Sequential([
    tf.keras.Input(shape=(64,), name="pixels"),
    tf.keras.layers.Rescaling(1.0 / 16.0, offset=-0.5),
    tf.keras.layers.Dense(32),
    tf.keras.layers.BatchNormalization(),
    tf.keras.layers.Activation("relu"),
    tf.keras.layers.Dense(16, activation="tanh"),
    tf.keras.layers.Dense(10, activation="softmax"),
])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(features, labels, epochs=30, batch_size=32, verbose=0)
rows = features[REFERENCE_ROWS]
expected = model(rows, training=False).numpy().astype(np.float32)


@tf.function(input_signature=[tf.TensorSpec([None, 64], tf.float32, name="pixels")])
def serve(pixels):
    return {"probabilities": model(pixels, training=False)}


onnx_model, _ = tf2onnx.convert.from_function(serve, input_signature=serve.input_signature,
                                              opset=15)
onnx.save(onnx_model, HERE / "keras_dense.onnx")
output_name = onnx_model.graph.output[0].name
input_name = onnx_model.graph.input[0].name
write_expected(HERE / "keras_dense.expected.json",
               f"tf2onnx {tf2onnx.__version__}, tensorflow {tf.__version__}, onnx {onnx.__version__}",
               {input_name: rows}, {output_name: expected},
               notes="Keras model(x, training=False)")
print("inputs", [i.name for i in onnx_model.graph.input], "outputs", [o.name for o in onnx_model.graph.output],
      "nodes", [n.op_type for n in onnx_model.graph.node])
