"""Fixtures from scikit-learn through skl2onnx: an MLPClassifier on the digits, exported with
and without the ZipMap tail (MatMul + Add per layer, Softmax, ArgMax, ArrayFeatureExtractor,
Cast, ZipMap).

    python3.11 -m venv /tmp/venv-import-tf
    /tmp/venv-import-tf/bin/pip install scikit-learn==1.9.1 skl2onnx==1.20.0 onnx==1.23.2
    /tmp/venv-import-tf/bin/python onnx/tests/data/import/make_sklearn.py

Writes sklearn_mlp.onnx, sklearn_mlp_zipmap.onnx and their .expected.json (scikit-learn's own
predict and predict_proba on REFERENCE_ROWS).
"""

import numpy as np
import onnx
import skl2onnx
import sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.neural_network import MLPClassifier

from common import HERE, REFERENCE_ROWS, digits, write_expected

features, labels = digits()
classifier = MLPClassifier(hidden_layer_sizes=(32, 16), activation="relu", max_iter=400,
                           random_state=0)
classifier.fit(features, labels)
rows = features[REFERENCE_ROWS]
expected_labels = classifier.predict(rows).astype(np.int64)
expected_probabilities = classifier.predict_proba(rows).astype(np.float32)
exporter = f"skl2onnx {skl2onnx.__version__}, scikit-learn {sklearn.__version__}, onnx {onnx.__version__}"

for name, zipmap in [("sklearn_mlp", False), ("sklearn_mlp_zipmap", True)]:
    options = {id(classifier): {"zipmap": zipmap}}
    model = skl2onnx.convert_sklearn(
        classifier, initial_types=[("input", FloatTensorType([None, 64]))], options=options,
        target_opset={"": 13, "ai.onnx.ml": 3})
    onnx.save(model, HERE / f"{name}.onnx")
    output_names = [o.name for o in model.graph.output]
    write_expected(
        HERE / f"{name}.expected.json", exporter, {"input": rows},
        {output_names[0]: expected_labels, output_names[1]: expected_probabilities},
        notes="scikit-learn's predict (label) and predict_proba (float64, rounded to float32)"
              + (" ; the ZipMap output is a sequence of maps, recorded as its [N, classes] values"
                 if zipmap else ""))
    print(name, "outputs", output_names, "nodes", [n.op_type for n in model.graph.node])
