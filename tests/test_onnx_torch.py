"""Models exported from PyTorch run through gf.onnx on reference and cpu, against onnxruntime
(or PyTorch's own outputs where onnxruntime is missing)."""
import io
import warnings

import numpy as np
import pytest

import graphflow as gf

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")


class CNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=2), torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 10))

    def forward(self, x):
        return torch.log_softmax(self.body(x), dim=-1)


class Block(torch.nn.Module):
    """A pre-norm transformer block: causal multi-head self-attention and a GELU MLP."""

    def __init__(self, d=32, heads=4):
        super().__init__()
        self.ln1, self.ln2 = torch.nn.LayerNorm(d), torch.nn.LayerNorm(d)
        self.qkv, self.proj = torch.nn.Linear(d, 3 * d), torch.nn.Linear(d, d)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(d, 4 * d), torch.nn.GELU(),
                                       torch.nn.Linear(4 * d, d))
        self.heads = heads

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        q, k, v = (z.reshape(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / (d // self.heads) ** 0.5
        att = att.masked_fill(torch.triu(torch.ones(t, t, dtype=torch.bool), 1), float("-inf"))
        y = (att.softmax(-1) @ v).transpose(1, 2).reshape(b, t, d)
        x = x + self.proj(y)
        return x + self.mlp(self.ln2(x))


def _mlp():
    return torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.ReLU(), torch.nn.Linear(64, 32),
                               torch.nn.Tanh(), torch.nn.Linear(32, 5), torch.nn.Sigmoid())


CASES = {  # name: (model factory, input shape, batch dim exported as dynamic)
    "mlp": (_mlp, (6, 20), True),
    "cnn": (CNN, (2, 3, 16, 16), True),
    "transformer_block": (Block, (2, 8, 32), True),
}


def _export(name):
    torch.manual_seed(0)
    make, shape, dynamic = CASES[name]
    model = make().eval()
    with torch.no_grad():
        for p in model.parameters():  # nonzero BatchNorm statistics and biases
            p.add_(0.05 * torch.randn_like(p))
        for mod in model.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2.0)
    x = torch.randn(*shape)
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), f, dynamo=False, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}} if dynamic else None)
    with torch.no_grad():
        expected = model(x).numpy()
    return f.getvalue(), x.numpy(), expected


def _oracle(data, x, torch_out):
    try:
        import onnxruntime as ort
    except ImportError:
        return torch_out
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


@pytest.mark.parametrize("name", list(CASES))
def test_pytorch_export_matches_onnxruntime(name):
    data, x, torch_out = _export(name)
    expected = _oracle(data, x, torch_out)
    np.testing.assert_allclose(expected, torch_out, rtol=1e-4, atol=1e-5)  # the oracle agrees
    m = gf.onnx.import_model(data)
    if CASES[name][2]:
        assert m.inputs["x"].shape[0] is None
    for device in ("reference", "cpu"):
        got = m.run({"x": x}, device=device)["y"]
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5, err_msg=device)
