"""Fixtures from PyTorch: a small ResNet (skip connections) on the digits, exported twice.

- torch_resnet_legacy.onnx: torch.onnx.export(dynamo=False), opset 13 (the default EVAL
  mode folds the BatchNormalization nodes into the convolutions). Images [N, 1, 8, 8] scaled
  by 1/16 (Div), then
  - a stem: Conv(2x2, valid) + Relu, 16 channels of 7x7;
  - an identity block: Conv(3x3, pads 1) + Relu, Conv(3x3, pads 1), Add of the block's
    input, Relu;
  - a projection block: Conv(3x3, stride 2, pads 1) + Relu, Conv(3x3, pads 1), 32 channels
    of 4x4, and the shortcut Conv(1x1, stride 2) of the block's input, Add, Relu;
  - GlobalAveragePool, Flatten, Gemm to 10 logits.
- torch_resnet_dynamo.onnx: the same model, torch.onnx.export(dynamo=True), opset 18.

The stem is 2x2 so that the projection block's input is 7x7: kiln pads as TensorFlow's SAME,
and PyTorch's padding=1 with stride 2 is that padding on an odd size only (on 8x8 SAME pads
[0, 0, 1, 1], PyTorch [1, 1, 1, 1], which the importer refuses by name).

    /work/torchvenv/bin/python onnx/tests/data/import/make_torch_resnet.py
    ~/.cache/kiln-ci/venv/bin/python onnx/tests/data/import/onnxruntime_outputs.py \
        torch_resnet_legacy torch_resnet_dynamo
    (torch 2.15.0, onnx 1.23.2; onnxruntime 1.32.0 for the second step)

The model is trained briefly on kiln's bundled digits (all 1797 rows; BatchNorm statistics
from that training). This script writes PyTorch's own outputs (model.eval() forward) on
REFERENCE_ROWS; onnxruntime_outputs.py then replaces them with onnxruntime's outputs on the
same inputs, after checking that the two agree.
"""

import onnx
import torch
from torch import nn

from common import HERE, REFERENCE_ROWS, digits, write_expected

torch.manual_seed(0)
features, labels = digits()
x_all = torch.from_numpy(features).reshape(-1, 1, 8, 8)
y_all = torch.from_numpy(labels)


def conv_bn(cin, cout, kernel, stride=1, padding=0):
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False),
        nn.BatchNorm2d(cout))


class DigitsResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(conv_bn(1, 16, 2), nn.ReLU())
        self.a1 = nn.Sequential(conv_bn(16, 16, 3, padding=1), nn.ReLU())
        self.a2 = conv_bn(16, 16, 3, padding=1)
        self.b1 = nn.Sequential(conv_bn(16, 32, 3, stride=2, padding=1), nn.ReLU())
        self.b2 = conv_bn(32, 32, 3, padding=1)
        self.shortcut = conv_bn(16, 32, 1, stride=2)
        self.head = nn.Linear(32, 10)

    def forward(self, images):
        x = self.stem(images / 16.0)
        x = torch.relu(self.a2(self.a1(x)) + x)
        x = torch.relu(self.b2(self.b1(x)) + self.shortcut(x))
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return self.head(x)


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


model = DigitsResNet()
train(model, x_all)
rows = x_all[REFERENCE_ROWS]
with torch.no_grad():
    expected = model(rows).numpy()
torch.onnx.export(model, (rows,), HERE / "torch_resnet_legacy.onnx", dynamo=False, opset_version=13,
                  input_names=["images"], output_names=["logits"],
                  dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}})
write_expected(HERE / "torch_resnet_legacy.expected.json", f"torch.onnx.export legacy, torch {torch.__version__}",
               {"images": rows.numpy()}, {"logits": expected}, notes="model.eval() forward")
program = torch.onnx.export(model, (rows,), dynamo=True, opset_version=18,
                            input_names=["images"], output_names=["logits"],
                            dynamic_shapes={"images": {0: torch.export.Dim("batch")}})
program.save(HERE / "torch_resnet_dynamo.onnx")
write_expected(HERE / "torch_resnet_dynamo.expected.json", f"torch.onnx.export dynamo, torch {torch.__version__}",
               {"images": rows.numpy()}, {"logits": expected}, notes="model.eval() forward")

for name in ["torch_resnet_legacy", "torch_resnet_dynamo"]:
    exported = onnx.load(HERE / f"{name}.onnx")
    print(name, "opset", exported.opset_import[0].version)
    for node in exported.graph.node:
        print("  ", node.op_type, list(node.input), "->", list(node.output))
