"""Exception hierarchy. Every error names the op and where the user defined it."""


class GraphflowError(Exception):
    """Base class of every error graphflow raises on purpose."""


class ShapeError(GraphflowError, ValueError):
    """Shapes that do not fit an op: rank, broadcasting, sizes."""


class DTypeError(GraphflowError, TypeError):
    """Dtypes that do not fit an op, or a value that cannot take a dtype."""


class FeedError(GraphflowError, ValueError):
    """A bad feed_dict: unknown key, missing placeholder, wrong shape or dtype."""


class CompileError(GraphflowError):
    """Generated source failed to compile."""


class DeviceError(GraphflowError):
    """A device is missing, unusable, or cannot do what was asked."""


class GraphFileError(GraphflowError, ValueError):
    """A saved graph (gf.io) or checkpoint file that cannot be read: truncated, corrupt,
    from a newer graphflow, or missing."""


class NotSupportedError(GraphflowError, NotImplementedError):
    """A TF1 argument or feature graphflow accepts by name but does not support (yet)."""


class VariableReuseError(GraphflowError, ValueError):
    """get_variable broke a reuse rule: a name made twice, or shared before it exists."""


class UnsupportedOpError(GraphflowError):
    """An ONNX op, attribute value or dtype that graphflow cannot run (raised at import)."""


class DistributedError(GraphflowError):
    """Ranks disagree (graphs, shapes, buckets) or a collective did not complete in time."""
