"""The `graphflow` command: look inside saved graphs (gf.io.save_graph) and scripts.

    graphflow show GRAPH.json --stage {built,grad,optimized,fused} [--fetch NAME...] -o out.svg
    graphflow kernels GRAPH.json --fetch NAME... -o DIR
    graphflow stats GRAPH.json --fetch NAME... [--batch N] [--feed-shape NAME=2,3]
    graphflow run SCRIPT.py [--dump-kernels DIR] [--profile] [ARGS...]
    graphflow ops

NAME is a tensor name (`loss:0`) or an op name (`train`). Bad arguments print one line on
stderr and exit with status 2; a failure while working prints its message and exits 1.
"""
from __future__ import annotations

import argparse
import difflib
import os
import runpy
import sys
from typing import NoReturn

import numpy as np

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line on stderr (no usage dump) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _UsageError(Exception):
    """An argument that parsed but names nothing usable (a missing file, an unknown tensor)."""


def _one_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0] if isinstance(e, _UsageError) else text


def _load(path: str):
    import graphflow as gf
    if not os.path.exists(path):
        raise _UsageError(f"no such graph file: {path}")
    try:
        return gf.io.load_graph(path)
    except gf.errors.GraphflowError as e:
        raise _UsageError(f"cannot load {path}: {str(e).splitlines()[0]}") from None


def _fetches(graph, names: list[str]) -> list:
    out = []
    for name in names:
        try:
            out.append(graph.get_tensor_by_name(name) if ":" in name else graph.get_operation_by_name(name))
        except KeyError:
            kind = "tensor" if ":" in name else "op"
            known = [op.name + (":0" if ":" in name else "") for op in graph.get_operations()]
            close = difflib.get_close_matches(name, known, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise _UsageError(f"the graph has no {kind} named {name!r}{hint}") from None
    return out


def _placeholders(graph, fetches: list) -> list:
    from .graph import Tensor
    targets = [x.op if isinstance(x, Tensor) else x for x in fetches]
    return [op.outputs[0] for op in graph.subgraph_order(targets) if op.type == "Placeholder"]


def _feed_shapes(placeholders: list, batch: int | None, given: list[str]) -> dict:
    """Concrete shape per placeholder: its static dims, None dims from --batch or --feed-shape."""
    explicit = {}
    for item in given:
        name, sep, dims = item.partition("=")
        try:
            explicit[name.removesuffix(":0")] = tuple(int(d) for d in dims.split(",") if d.strip())
        except ValueError:
            sep = ""
        if not sep:
            raise _UsageError(f"--feed-shape {item!r}: write NAME=D1,D2,... (e.g. x=32,784)")
    known = {t.op.name for t in placeholders}
    for name in explicit:
        if name not in known:
            raise _UsageError(f"--feed-shape {name}: no placeholder of that name is needed "
                         f"(needed: {', '.join(sorted(known)) or 'none'})")
    shapes = {}
    for t in placeholders:
        static = list(t.shape)
        if t.op.name in explicit:
            shape = explicit[t.op.name]
            if len(shape) != len(static) or any(d is not None and d != n for d, n in zip(static, shape)):
                raise _UsageError(f"--feed-shape {t.op.name}={','.join(map(str, shape))} does not fit its "
                             f"shape {static}")
        elif None in static:
            if batch is None:
                raise _UsageError(f"placeholder {t.op.name!r} has shape {static}: give its size with "
                             f"--batch N or --feed-shape {t.op.name}=...")
            shape = tuple(batch if d is None else d for d in static)
        else:
            shape = tuple(static)
        shapes[t] = shape
    return shapes


def _feed_value(t, shape: tuple, rng: np.random.Generator) -> np.ndarray:
    """Random normal floats; zeros for integers and bools (valid labels and indices)."""
    if t.dtype.is_floating:
        return rng.standard_normal(shape).astype(t.dtype.np)
    return np.zeros(shape, t.dtype.np)


# ---- commands --------------------------------------------------------------------------------
def _show(args) -> int:
    import graphflow as gf
    graph = _load(args.graph)
    fetches = _fetches(graph, args.fetch or [])
    if args.scope:
        prefix = args.scope.strip("/") + "/"
        if not any(op.name.startswith(prefix) for op in graph.get_operations()):
            raise _UsageError(f"--scope {args.scope}: no op under that scope")
    text = gf.viz.to_dot(graph, args.stage, fetches or None, args.scope, args.collapse)
    gf.viz.render(text, args.output)
    print(f"wrote {args.output} ({args.stage} stage)")
    return 0


def _compile(graph, fetches: list, optimize=True, device: str = "cpu"):
    import graphflow as gf
    sess = gf.Session(graph, device=device, optimize=optimize)
    feeds = _placeholders(graph, fetches)
    return sess, sess.make_callable(fetches, feed_list=feeds), feeds


def _kernels(args) -> int:
    graph = _load(args.graph)
    fetches = _fetches(graph, args.fetch)
    sess, compiled, _ = _compile(graph, fetches, device=args.device)
    with sess:
        compiled.dump(args.output)
    print(f"wrote {len(compiled.kernels)} kernels, graph.cu and manifest.json to {args.output}")
    return 0


def _stats(args) -> int:
    import graphflow as gf
    graph = _load(args.graph)
    fetches = _fetches(graph, args.fetch)
    shapes = _feed_shapes(_placeholders(graph, fetches), args.batch, args.feed_shape or [])
    rng = np.random.default_rng(0)
    values = {t: _feed_value(t, shape, rng) for t, shape in shapes.items()}
    with graph.as_default():  # the variables' initializers, run before each measured call
        init = gf.variables_initializer(gf.global_variables(graph), name="graphflow_stats_init")
    columns = {}
    for label, optimize in (("optimized", True), ("not optimized", False)):
        sess, compiled, feeds = _compile(graph, fetches, optimize, args.device)
        with sess:
            sess.run(init)
            compiled(*[values[t] for t in feeds])
            columns[label] = compiled.stats
    rows = ["kernels", "launches", "bytes_moved", "flops", "peak_memory_bytes"]
    width = max(len(r) for r in rows)
    names = list(columns)
    widths = [max(len(n), *(len(f"{columns[n][r]:,}") for r in rows)) for n in names]
    print(" " * width + "  " + "  ".join(n.rjust(w) for n, w in zip(names, widths)))
    for r in rows:
        print(r.ljust(width) + "  " + "  ".join(f"{columns[n][r]:,}".rjust(w) for n, w in zip(names, widths)))
    return 0


def _run(args) -> int:
    if not os.path.isfile(args.script):
        raise _UsageError(f"no such script: {args.script}")
    if args.dump_kernels:
        os.environ["GRAPHFLOW_DUMP_DIR"] = os.path.abspath(args.dump_kernels)
    if args.profile:
        os.environ["GRAPHFLOW_PROFILE"] = "1"
    sys.argv = [args.script, *args.args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(args.script)))
    runpy.run_path(args.script, run_name="__main__")
    return 0


def _ops(args) -> int:
    from . import registry
    from .opdocs import _compiled_types, devices_of
    compiled = _compiled_types()
    width = max(len(t) for t in registry.OPS)
    for op_type in sorted(registry.OPS):
        print(f"{op_type.ljust(width)}  {', '.join(devices_of(op_type, compiled))}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `graphflow` command."""
    from .viz import STAGES
    parser = _Parser(prog="graphflow", description="Look inside graphflow graphs: pictures of each "
                     "compile stage, generated kernels, stats, profiles, the supported ops.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    fetch_help = "a tensor (loss:0) or op (train) name to compute; repeat or list several"

    show = sub.add_parser("show", help="draw a saved graph at one compile stage (SVG, PNG, PDF or DOT)",
                          description="Draw a saved graph at one stage: built (the forward ops), grad "
                          "(with the gradient ops), optimized (after the graph passes), fused (one "
                          "cluster per kernel). Without --fetch, optimized and fused take every op no "
                          "other op consumes.")
    show.add_argument("graph", metavar="GRAPH.json", help="a graph saved by gf.io.save_graph")
    show.add_argument("--stage", choices=STAGES, default="built", help="which stage (default: built)")
    show.add_argument("--fetch", nargs="+", metavar="NAME", help=fetch_help)
    show.add_argument("--scope", help="show only the ops under this name scope")
    show.add_argument("--collapse", type=int, default=40, metavar="N",
                      help="draw a name scope with more than N ops as one node (0: never; default 40)")
    show.add_argument("-o", "--output", required=True, metavar="FILE",
                      help="the picture: .svg, .png, .pdf (needs Graphviz's dot) or .dot")
    show.set_defaults(func=_show)

    kernels = sub.add_parser("kernels", help="write the generated CUDA C (.cu per kernel) and manifest.json",
                             description="Compile the fetches of a saved graph and write graph.cu, one "
                             "standalone .cu per kernel and manifest.json (Compiled.dump).")
    kernels.add_argument("graph", metavar="GRAPH.json", help="a graph saved by gf.io.save_graph")
    kernels.add_argument("--fetch", nargs="+", metavar="NAME", required=True, help=fetch_help)
    kernels.add_argument("-o", "--output", required=True, metavar="DIR", help="the folder to write")
    kernels.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="default: cpu")
    kernels.set_defaults(func=_kernels)

    stats = sub.add_parser("stats", help="kernels, launches, bytes, flops, peak memory: optimized and not",
                           description="Compile the fetches of a saved graph with and without "
                           "optimization, run each once on generated inputs (random floats, zero "
                           "integers) and print their stats side by side.")
    stats.add_argument("graph", metavar="GRAPH.json", help="a graph saved by gf.io.save_graph")
    stats.add_argument("--fetch", nargs="+", metavar="NAME", required=True, help=fetch_help)
    stats.add_argument("--batch", type=int, metavar="N", help="the size of every None dim")
    stats.add_argument("--feed-shape", action="append", metavar="NAME=D1,D2",
                       help="one placeholder's full shape (repeatable), e.g. x=32,784")
    stats.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="default: cpu")
    stats.set_defaults(func=_stats)

    run = sub.add_parser("run", help="run a Python script with kernel dumps and/or profiling on",
                         description="Run SCRIPT.py as __main__ with GRAPHFLOW_DUMP_DIR (one "
                         "subfolder per compile) and/or GRAPHFLOW_PROFILE=1 (per-kernel tables on "
                         "stderr at exit) set. Arguments for the script go after --: "
                         "graphflow run train.py --profile -- --epochs 3")
    run.add_argument("script", metavar="SCRIPT.py", help="the script to run")
    run.add_argument("--dump-kernels", metavar="DIR", help="write every compile's kernels under DIR")
    run.add_argument("--profile", action="store_true", help="print per-kernel times at exit")
    run.set_defaults(func=_run)

    ops = sub.add_parser("ops", help="the supported ops, one per line, with their devices",
                         description="Every op type in the registry with the devices that run it.")
    ops.set_defaults(func=_ops)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `graphflow` console script; returns the exit status."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    script_args = []
    if argv[:1] == ["run"] and "--" in argv:  # graphflow run s.py [options] -- script arguments
        cut = argv.index("--")
        argv, script_args = argv[:cut], argv[cut + 1:]
    args = parser.parse_args(argv)
    args.args = script_args
    from .errors import GraphflowError
    command = f"{parser.prog} {args.command}"
    if args.command == "run":  # the script's own errors keep their traceback
        try:
            return args.func(args)
        except _UsageError as e:
            print(f"{command}: error: {_one_line(e)}", file=sys.stderr)
            return 2
    try:
        return args.func(args)
    except _UsageError as e:
        print(f"{command}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `graphflow ops | head`
        sys.stdout = open(os.devnull, "w")
        return 0
    except (GraphflowError, OSError) as e:
        print(f"{command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
