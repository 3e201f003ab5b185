"""Shared helpers of the fixture scripts: the bundled UCI digits and the expected-output files.

The digits come from kiln's own copy (trainer/data/digits.csv.gz: 1797 rows, 64 pixels 0..16,
then the label), so no script downloads anything. The expected-output files are JSON that the
Rust tests and `kiln check --expected` read without Python; see docs/import.md.
"""

import gzip
import json
import pathlib

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
DIGITS = HERE.parents[3] / "trainer" / "data" / "digits.csv.gz"
# The rows whose outputs each fixture records: a fixed, spread-out handful of the data set.
REFERENCE_ROWS = [0, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987]


def digits():
    """(features float32 [1797, 64], labels int64 [1797]) in file order."""
    with gzip.open(DIGITS, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float64)
    return table[:, :64].astype(np.float32), table[:, 64].astype(np.int64)


def tensor_entry(array):
    array = np.asarray(array)
    if array.dtype.kind == "f":
        # Python floats print the shortest text that round-trips the float32 value.
        data = [float(v) for v in array.astype(np.float32).ravel()]
    else:
        data = [int(v) for v in array.ravel()]
    return {"shape": list(array.shape), "data": data}


def write_expected(path, exporter, inputs, outputs, notes=""):
    """inputs/outputs: dicts from graph tensor names to numpy arrays."""
    document = {
        "format": "kiln-expected-outputs",
        "format_version": 1,
        "exporter": exporter,
        "notes": notes,
        "inputs": {name: tensor_entry(value) for name, value in inputs.items()},
        "outputs": {name: tensor_entry(value) for name, value in outputs.items()},
    }
    path.write_text(json.dumps(document, indent=1) + "\n")
