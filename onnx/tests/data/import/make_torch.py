"""Fixtures from PyTorch: the same kind of digits MLP exported twice.

- torch_legacy.onnx: torch.onnx.export(dynamo=False), opset 13. Images [N, 1, 8, 8] are
  normalised in forward() ((x - mean) / std: Sub, Div), flattened (Flatten) and go through
  Linear (Gemm), BatchNorm1d, ReLU, Dropout, Linear, LeakyReLU(0.1), Linear.
- torch_dynamo.onnx + torch_dynamo.onnx.data: torch.onnx.export(dynamo=True), opset 18, with
  external data (the default since PyTorch 2.5). Images [N, 8, 8] scaled by 1/16 (Mul),
  reshaped (Reshape), then Linear, ReLU6, Linear, Sigmoid, Linear, Tanh, Linear, LogSoftmax.

    python3.11 -m venv /tmp/venv-import
    /tmp/venv-import/bin/pip install torch==2.15.0 onnxscript==0.7.2 onnx==1.23.2
    /tmp/venv-import/bin/python onnx/tests/data/import/make_torch.py

The expected outputs are PyTorch's own (model.eval() forward) on REFERENCE_ROWS.
"""

import numpy as np
import onnx
import torch
from torch import nn

from common import HERE, REFERENCE_ROWS, digits, write_expected

torch.manual_seed(0)
features, labels = digits()
x_all = torch.from_numpy(features)
y_all = torch.from_numpy(labels)


class LegacyNet(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.flatten = nn.Flatten()
        self.body = nn.Sequential(
            nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.1),
            nn.Linear(32, 16), nn.LeakyReLU(0.1), nn.Linear(16, 10))

    def forward(self, images):
        return self.body(self.flatten((images - self.mean) / self.std))


class DynamoNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(64, 32), nn.ReLU6(), nn.Linear(32, 24), nn.Sigmoid(),
            nn.Linear(24, 16), nn.Tanh(), nn.Linear(16, 10), nn.LogSoftmax(dim=1))

    def forward(self, images):
        return self.body((images * 0.0625).reshape(-1, 64))


def train(model, inputs, epochs=40):
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss() if not isinstance(model.body[-1], nn.LogSoftmax) else nn.NLLLoss()
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(inputs)).split(64):
            optimizer.zero_grad()
            loss_fn(model(inputs[batch]), y_all[batch]).backward()
            optimizer.step()
    model.eval()


pixel_mean = x_all.mean(dim=0).reshape(1, 1, 8, 8)
pixel_std = x_all.std(dim=0).reshape(1, 1, 8, 8) + 0.5
legacy = LegacyNet(pixel_mean, pixel_std)
legacy_inputs = x_all.reshape(-1, 1, 8, 8)
train(legacy, legacy_inputs)
rows = legacy_inputs[REFERENCE_ROWS]
with torch.no_grad():
    expected = legacy(rows).numpy()
torch.onnx.export(legacy, (rows,), HERE / "torch_legacy.onnx", dynamo=False, opset_version=13,
                  input_names=["images"], output_names=["logits"],
                  dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}})
write_expected(HERE / "torch_legacy.expected.json", f"torch.onnx.export legacy, torch {torch.__version__}",
               {"images": rows.numpy()}, {"logits": expected}, notes="model.eval() forward")

dynamo = DynamoNet()
dynamo_inputs = x_all.reshape(-1, 8, 8)
train(dynamo, dynamo_inputs)
rows = dynamo_inputs[REFERENCE_ROWS]
with torch.no_grad():
    expected = dynamo(rows).numpy()
program = torch.onnx.export(dynamo, (rows,), dynamo=True, opset_version=18,
                            input_names=["images"], output_names=["log_probabilities"],
                            dynamic_shapes={"images": {0: torch.export.Dim("batch")}})
program.save(HERE / "torch_dynamo.onnx", external_data=True)
write_expected(HERE / "torch_dynamo.expected.json", f"torch.onnx.export dynamo, torch {torch.__version__}",
               {"images": rows.numpy()}, {"log_probabilities": expected}, notes="model.eval() forward")

for name in ["torch_legacy", "torch_dynamo"]:
    model = onnx.load(HERE / f"{name}.onnx", load_external_data=False)
    print(name, "opset", model.opset_import[0].version,
          "nodes", [n.op_type for n in model.graph.node],
          "external", [t.name for t in model.graph.initializer if t.data_location == 1])
