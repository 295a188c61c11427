"""The converter table: ONNX op type -> fn(node, inputs, attrs, opset) -> output tensors."""
from __future__ import annotations

from .convert_attention import ATTENTION
from .convert_elementwise import ELEMENTWISE
from .convert_loss import LOSS
from .convert_misc import MISC
from .convert_nn import NN
from .convert_quant import QUANT
from .convert_reduce import REDUCE
from .convert_resize import RESIZE
from .convert_rnn import RNN
from .convert_shape import SHAPE
from .convert_signal import SIGNAL

CONVERTERS = {**ELEMENTWISE, **SHAPE, **REDUCE, **NN, **LOSS, **ATTENTION, **RESIZE, **MISC, **RNN,
              **QUANT, **SIGNAL}
