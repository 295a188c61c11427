"""Models specialized on the values of some graph inputs.

graphflow compiles static graphs: axes, shapes, pads, repeats and the like must be known when
the graph is built. ONNX lets a model take them as graph inputs. Such a model imports as a
SpecializedModel: `run` builds (and compiles, once per device) one graph per distinct value of
those inputs, with the values as constants, and runs it on the other inputs. Nothing is
guessed: the outputs are computed from the values fed.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import FeedError, UnsupportedOpError
from ..graph import Graph, Tensor

MAX_SPECIALIZATIONS = 64  # distinct values kept per model (oldest dropped first)


class SpecializedModel:
    """An imported ONNX model whose `value_inputs` are compiled in as constants per value.

    `graph` holds a placeholder per graph input and the initializers; `inputs` maps every ONNX
    input name to its placeholder there; `outputs` maps every output name to its Tensor in the
    graph of the latest `run` (None before the first run); `run(feeds, device=None)` as
    ImportedModel's.
    """

    def __init__(self, proto, opset: int, graph: Graph, inputs: dict, value_inputs: list,
                 build: Callable) -> None:
        self._proto, self._build = proto, build
        self.opset = opset
        self.graph = graph
        self.inputs: dict[str, Tensor] = inputs
        self.value_inputs: list[str] = list(value_inputs)
        self.outputs: dict[str, Tensor | None] = {vi.name: None for vi in proto.graph.output}
        self._models: dict[tuple, object] = {}

    def run(self, feeds: dict, device: str | None = None) -> dict:
        """Feed arrays by ONNX input name; get every output by name."""
        from .importer import _NeedsInput, check_feed_names
        check_feed_names(feeds, self.inputs)
        while True:
            bound = {n: self._value(n, feeds[n]) for n in self.value_inputs}
            key = tuple((n, v.shape, v.tobytes()) for n, v in bound.items())
            model = self._models.get(key)
            if model is not None:
                break
            try:
                model = self._build(self._proto, self.opset, False, bound)
            except _NeedsInput as e:
                new = [n for n in e.names if n not in self.value_inputs]
                if not new:  # cannot happen: bound inputs are constants
                    raise UnsupportedOpError(f"{e.where}: {e}") from None
                self.value_inputs += new
                continue
            if len(self._models) >= MAX_SPECIALIZATIONS:
                self._models.pop(next(iter(self._models)))
            self._models[key] = model
            break
        self.outputs = dict(model.outputs)
        return model.run({n: feeds[n] for n in model.inputs}, device=device)

    def _value(self, name: str, value) -> np.ndarray:
        """A fed value of a value input, checked like a feed of its placeholder."""
        t = self.inputs[name]
        arr = np.asarray(value)
        if not (np.can_cast(arr.dtype, t.dtype.np, "same_kind") and arr.dtype.kind != "O"):
            raise FeedError(f"ONNX input {name!r} expects {t.dtype.name}, got {arr.dtype}")
        if len(arr.shape) != len(t.shape) or any(
                d is not None and d != a for d, a in zip(t.shape, arr.shape)):
            raise FeedError(f"ONNX input {name!r} expects shape "
                            f"{['?' if d is None else d for d in t.shape]}, got {list(arr.shape)}")
        return np.array(arr, dtype=t.dtype.np, order="C")

    def __repr__(self) -> str:
        return (f"<gf.onnx model: inputs {list(self.inputs)}, outputs {list(self.outputs)}, "
                f"opset {self.opset}, specialized on {self.value_inputs}>")
