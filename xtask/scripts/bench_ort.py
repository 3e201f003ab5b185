"""onnxruntime's inference time on Kiln's model files, for `cargo xtask bench-inference`.

Usage: bench_ort.py INPUT_NPY BATCH ONNX...

One thread (intra- and inter-op), onnxruntime's default graph optimizations (what its users
run: the QDQ file becomes its own int8 kernels). Every file gets the same raw test rows, in
batches of BATCH, cycling through the first rows of INPUT_NPY. Prints one JSON line per file:
{"file": ..., "batch": ..., "ns_per_row": ...}, the median of repeated timed runs.
"""

import json
import sys
import time

import numpy as np
import onnxruntime as ort

N_ROWS = 256  # the rows the criterion bench cycles through
MIN_SECONDS = 2.0  # timed per file, after a warm-up


def session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def main():
    input_npy, batch, paths = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    rows = np.load(input_npy).astype(np.float32)[:N_ROWS]
    batches = [rows[i : i + batch] for i in range(0, len(rows) - batch + 1, batch)]
    for path in paths:
        sess = session(path)
        name = sess.get_inputs()[0].name
        for x in batches[:4]:
            sess.run(None, {name: x})
        samples = []
        started = time.perf_counter()
        while time.perf_counter() - started < MIN_SECONDS or len(samples) < 20:
            t0 = time.perf_counter_ns()
            for x in batches:
                sess.run(None, {name: x})
            samples.append((time.perf_counter_ns() - t0) / (len(batches) * batch))
        samples.sort()
        print(json.dumps({"file": path, "batch": batch, "ns_per_row": samples[len(samples) // 2]}))


if __name__ == "__main__":
    main()
