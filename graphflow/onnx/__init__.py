"""ONNX interop: `gf.onnx.import_model(model, trainable=False)` (onnx is imported lazily)."""
from .converters import CONVERTERS
from .importer import ImportedModel, import_model
from .specialize import SpecializedModel

__all__ = ["import_model", "ImportedModel", "SpecializedModel", "CONVERTERS"]
