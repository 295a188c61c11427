"""graphflow: a TensorFlow-1-style deep learning framework that compiles graphs to CUDA C.

    import graphflow as gf
    x = gf.placeholder(gf.float32, [None, 784])
    ...
    with gf.Session() as sess:
        sess.run(train_op, {x: batch})
"""
from . import data, distributed, errors, initializers, io, nn, onnx, train, viz
from .autodiff import add_n, gradients
from .clip import clip_by_global_norm, global_norm
from .custom_op import custom_op
from .dtypes import (
                    DType,
                    as_dtype,
                    bool_,
                    float16,
                    float32,
                    float64,
                    int8,
                    int16,
                    int32,
                    int64,
                    uint8,
                    uint16,
                    uint32,
                    uint64,
)
from .graph import (
                    Graph,
                    Operation,
                    Tensor,
                    TensorShape,
                    control_dependencies,
                    get_default_graph,
                    name_scope,
                    reset_default_graph,
)
from .ops.array import (
                    broadcast_to,
                    concat,
                    cumsum,
                    expand_dims,
                    gather,
                    one_hot,
                    reshape,
                    squeeze,
                    stack,
                    strided_slice,
                    transpose,
)
from .ops.composite import clip_by_value
from .ops.core import (
                    cast,
                    constant,
                    fill_like,
                    group,
                    identity,
                    no_op,
                    ones,
                    ones_like,
                    placeholder,
                    stop_gradient,
                    zeros,
                    zeros_like,
)
from .ops.elementwise import (
                    abs,
                    add,
                    ceil,
                    cos,
                    divide,
                    equal,
                    erf,
                    exp,
                    floor,
                    floordiv,
                    greater,
                    greater_equal,
                    less,
                    less_equal,
                    log,
                    log1p,
                    logical_and,
                    logical_or,
                    maximum,
                    minimum,
                    multiply,
                    negative,
                    not_equal,
                    pow,
                    round,
                    rsqrt,
                    sigmoid,
                    sign,
                    sin,
                    sqrt,
                    square,
                    subtract,
                    tanh,
                    where,
)
from .ops.layout import pad, slice, split, tile, unstack
from .ops.linalg import matmul
from .ops.random import random_normal, random_uniform, truncated_normal
from .ops.reduction import (
                    argmax,
                    argmin,
                    reduce_logsumexp,
                    reduce_max,
                    reduce_mean,
                    reduce_min,
                    reduce_prod,
                    reduce_sum,
)
from .profiling import RunMetadata, RunOptions
from .session import Compiled, Session, get_default_session
from .variable_scope import (
                    AUTO_REUSE,
                    VariableScope,
                    get_variable,
                    get_variable_scope,
                    variable_scope,
)
from .variables import (
                    Variable,
                    assign,
                    assign_add,
                    assign_sub,
                    global_variables,
                    global_variables_initializer,
                    trainable_variables,
                    variables_initializer,
)

__version__ = "0.1.0"

__all__ = [
    "data", "distributed", "errors", "initializers", "io", "nn", "onnx", "train", "add_n",
    "gradients",
    "clip_by_global_norm", "custom_op",
    "global_norm", "DType", "as_dtype", "bool_", "float16", "float32", "float64", "int32", "int64",
    "int8", "int16", "uint8", "uint16", "uint32", "uint64",
    "Graph", "Operation", "Tensor", "TensorShape", "control_dependencies", "get_default_graph",
    "name_scope", "reset_default_graph", "broadcast_to", "concat", "cumsum", "expand_dims",
    "gather", "one_hot", "reshape", "squeeze", "stack", "strided_slice", "transpose", "cast",
    "constant", "fill_like", "group", "identity", "no_op", "ones", "ones_like", "placeholder",
    "stop_gradient", "zeros", "zeros_like", "abs", "add", "cos", "divide", "equal", "erf", "exp",
    "floordiv", "greater", "greater_equal", "less", "less_equal", "log", "logical_and",
    "logical_or", "maximum", "minimum", "multiply", "negative", "not_equal", "pow", "rsqrt",
    "sigmoid", "sign", "sin", "sqrt", "square", "subtract", "tanh", "where", "matmul",
    "random_normal", "random_uniform", "truncated_normal", "argmax", "argmin", "reduce_max",
    "reduce_mean", "reduce_min", "reduce_sum", "Compiled", "Session", "get_default_session",
    "Variable", "assign", "assign_add", "assign_sub", "global_variables",
    "global_variables_initializer", "trainable_variables", "variables_initializer",
    "AUTO_REUSE", "VariableScope", "get_variable", "get_variable_scope", "variable_scope",
    "clip_by_value", "ceil", "floor", "log1p", "round", "pad", "slice", "split", "tile", "unstack",
    "reduce_logsumexp", "reduce_prod", "viz", "RunMetadata", "RunOptions",
]
