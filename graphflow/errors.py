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


class UnsupportedOpError(GraphflowError):
    """An ONNX op, attribute value or dtype that graphflow cannot run (raised at import)."""
