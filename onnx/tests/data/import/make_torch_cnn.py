"""Fixtures from PyTorch: a digits CNN (and a Conv1D network), exported twice.

- torch_cnn_legacy.onnx: torch.onnx.export(dynamo=False), opset 13, exported with
  training=TrainingMode.PRESERVE so the BatchNormalization nodes stay in the graph (the
  default EVAL mode folds them into the convolutions). Images [N, 1, 8, 8] scaled by 1/16
  (Div), then Conv(3x3, pads 1) + BatchNormalization + Relu, MaxPool(2), Conv(3x3, pads 1) +
  BatchNormalization + Relu, a depthwise Conv(3x3, pads 1, group 16) + Relu, AveragePool(2),
  Flatten, Gemm + Relu, Gemm.
- torch_cnn_dynamo.onnx + .onnx.data: the same model, torch.onnx.export(dynamo=True),
  opset 18, external data. Its graph optimizer folds the BatchNormalization nodes into the
  convolutions itself, and the flatten is a Reshape to [-1, 64].
- torch_conv1d_legacy.onnx: a Conv1D network on [N, 8, 8] read as 8 channels of length 8:
  Conv(3, pads 1) + Relu, MaxPool(2), a depthwise Conv(3, pads 1, group 16) + Relu, Flatten,
  Gemm.

    /work/torchvenv/bin/python onnx/tests/data/import/make_torch_cnn.py
    (torch 2.15.0, onnx 1.23; the venv of make_torch.py also has onnxscript for dynamo=True)

The models are trained briefly on kiln's bundled digits (all 1797 rows), the BatchNorm layers'
running statistics come from that training (non-trivial mean and variance), and the expected
outputs are PyTorch's own (model.eval() forward) on REFERENCE_ROWS.
"""

import onnx
import torch
from torch import nn

from common import HERE, REFERENCE_ROWS, digits, write_expected

torch.manual_seed(0)
features, labels = digits()
x_all = torch.from_numpy(features)
y_all = torch.from_numpy(labels)


class DigitsCnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1, groups=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.ReLU(), nn.AvgPool2d(2),
            nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))

    def forward(self, images):
        return self.body(images / 16.0)


class DigitsConv1d(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv1d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool1d(2),
            nn.Conv1d(16, 16, 3, padding=1, groups=16), nn.ReLU(),
            nn.Flatten(), nn.Linear(64, 10))

    def forward(self, rows):
        return self.body(rows / 16.0)


def train(model, inputs, epochs=15):
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(inputs)).split(64):
            optimizer.zero_grad()
            loss_fn(model(inputs[batch]), y_all[batch]).backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(inputs).argmax(dim=1) == y_all).float().mean().item()
    print(type(model).__name__, "training accuracy", accuracy)


cnn = DigitsCnn()
cnn_inputs = x_all.reshape(-1, 1, 8, 8)
train(cnn, cnn_inputs)
for layer in cnn.body:
    if isinstance(layer, nn.BatchNorm2d):
        print("BatchNorm2d running_mean", layer.running_mean[:4].tolist(),
              "running_var", layer.running_var[:4].tolist())
rows = cnn_inputs[REFERENCE_ROWS]
with torch.no_grad():
    expected = cnn(rows).numpy()
torch.onnx.export(cnn, (rows,), HERE / "torch_cnn_legacy.onnx", dynamo=False, opset_version=13,
                  training=torch.onnx.TrainingMode.PRESERVE,
                  input_names=["images"], output_names=["logits"],
                  dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}})
write_expected(HERE / "torch_cnn_legacy.expected.json", f"torch.onnx.export legacy, torch {torch.__version__}",
               {"images": rows.numpy()}, {"logits": expected}, notes="model.eval() forward")
program = torch.onnx.export(cnn, (rows,), dynamo=True, opset_version=18,
                            input_names=["images"], output_names=["logits"],
                            dynamic_shapes={"images": {0: torch.export.Dim("batch")}})
program.save(HERE / "torch_cnn_dynamo.onnx", external_data=True)
write_expected(HERE / "torch_cnn_dynamo.expected.json", f"torch.onnx.export dynamo, torch {torch.__version__}",
               {"images": rows.numpy()}, {"logits": expected}, notes="model.eval() forward")

conv1d = DigitsConv1d()
conv1d_inputs = x_all.reshape(-1, 8, 8)
train(conv1d, conv1d_inputs)
rows = conv1d_inputs[REFERENCE_ROWS]
with torch.no_grad():
    expected = conv1d(rows).numpy()
torch.onnx.export(conv1d, (rows,), HERE / "torch_conv1d_legacy.onnx", dynamo=False, opset_version=13,
                  input_names=["rows"], output_names=["logits"],
                  dynamic_axes={"rows": {0: "batch"}, "logits": {0: "batch"}})
write_expected(HERE / "torch_conv1d_legacy.expected.json", f"torch.onnx.export legacy, torch {torch.__version__}",
               {"rows": rows.numpy()}, {"logits": expected}, notes="model.eval() forward")

for name in ["torch_cnn_legacy", "torch_cnn_dynamo", "torch_conv1d_legacy"]:
    model = onnx.load(HERE / f"{name}.onnx", load_external_data=False)
    print(name, "opset", model.opset_import[0].version,
          "nodes", [n.op_type for n in model.graph.node],
          "external", [t.name for t in model.graph.initializer if t.data_location == 1])
