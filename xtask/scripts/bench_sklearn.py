"""scikit-learn's MLPClassifier on MNIST, the baseline `cargo xtask bench-train` compares with.

Usage: bench_sklearn.py MNIST_DIR --optimizer sgd|adam --lr LR --epochs N [--momentum M]
       [--batch 64] [--hidden 128] [--seed 0]

Prints one JSON line: seconds_per_epoch, test_accuracy and the versions used.

The run matches kiln's bench configurations: 784-HIDDEN-10, ReLU, softmax cross-entropy,
pixels x/255 as float32, mini-batches of BATCH shuffled every epoch, a constant learning
rate, no L2 penalty (alpha=0; kiln runs with --weight-decay 0), Glorot-uniform weights
(scikit-learn's own initialisation; kiln runs with --init xavier), no early stopping and no
convergence test (tol=0 and n_iter_no_change above the epoch count), so exactly EPOCHS
passes over the data run. One BLAS thread: the caller sets OMP/OPENBLAS/MKL_NUM_THREADS=1
and threadpoolctl enforces it again. The time is that of `fit` over all epochs, divided by
the epoch count; loading the data and scoring the test set are outside it.
"""

import argparse
import gzip
import json
import os
import sys
import time
import warnings

import numpy as np
import sklearn
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier
from threadpoolctl import threadpool_info, threadpool_limits


def read_idx(path):
    """An IDX file (gzip or plain) as a numpy array of its declared shape."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as handle:
        data = handle.read()
    if data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        sys.exit(f"{path}: expected an IDX file of unsigned bytes")
    n_dims = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(n_dims)]
    offset = 4 + 4 * n_dims
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


def find(folder, stem):
    for name in (stem + ".gz", stem):
        path = os.path.join(folder, name)
        if os.path.exists(path):
            return path
    sys.exit(f"{folder}: no {stem}[.gz]")


def load(folder, prefix):
    images = read_idx(find(folder, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(find(folder, f"{prefix}-labels-idx1-ubyte"))
    features = images.reshape(len(images), -1).astype(np.float32) / np.float32(255.0)
    return features, labels.astype(np.int64)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mnist")
    parser.add_argument("--optimizer", choices=["sgd", "adam"], required=True)
    parser.add_argument("--lr", type=float, required=True)
    parser.add_argument("--momentum", type=float, default=0.0)
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    x_train, y_train = load(args.mnist, "train")
    x_test, y_test = load(args.mnist, "t10k")
    options = dict(
        hidden_layer_sizes=(args.hidden,),
        activation="relu",
        solver=args.optimizer,
        alpha=0.0,
        batch_size=args.batch,
        learning_rate="constant",
        learning_rate_init=args.lr,
        max_iter=args.epochs,
        shuffle=True,
        random_state=args.seed,
        tol=0.0,
        n_iter_no_change=args.epochs + 1,
        early_stopping=False,
    )
    if args.optimizer == "sgd":
        # kiln's momentum is PyTorch's (heavy ball); Nesterov only when kiln asks for it.
        options.update(momentum=args.momentum, nesterovs_momentum=False)
    else:
        # kiln's Adam defaults.
        options.update(beta_1=0.9, beta_2=0.999, epsilon=1e-8)
    model = MLPClassifier(**options)
    with threadpool_limits(limits=1):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            started = time.perf_counter()
            model.fit(x_train, y_train)
            seconds = time.perf_counter() - started
        accuracy = float(model.score(x_test, y_test))
        blas = [
            {key: info.get(key) for key in ("internal_api", "num_threads")}
            for info in threadpool_info()
        ]
    print(
        json.dumps(
            {
                "seconds_per_epoch": seconds / model.n_iter_,
                "epochs": model.n_iter_,
                "test_accuracy": accuracy,
                "dtype": str(model.coefs_[0].dtype),
                "sklearn": sklearn.__version__,
                "numpy": np.__version__,
                "blas": blas,
            }
        )
    )


if __name__ == "__main__":
    main()
