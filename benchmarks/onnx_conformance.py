"""ONNX backend node-test conformance, measured like tract measures it.

Runs every node test case shipped with the onnx wheel
(`onnx.backend.test.loader.load_model_tests(kind='node')`) through `gf.onnx.import_model`
on each device and prints: passed, unsupported (UnsupportedOpError at import, with the top
missing ops), refused (another GraphflowError), wrong and crashed. A case passes when every
output has the expected shape and dtype and matches within rtol 1e-3, atol 1e-5 (NaN equals
NaN; integers and booleans exactly).

    python benchmarks/onnx_conformance.py                       # reference and cpu, all cases
    python benchmarks/onnx_conformance.py --devices reference -k conv --verbose
    python benchmarks/onnx_conformance.py --write-manifest tests/onnx_manifest.json
    python benchmarks/onnx_conformance.py --light --devices reference   # onnx's light models
"""
from __future__ import annotations

import argparse
import collections
import json
import re
import sys
import time
import warnings

import numpy as np

import graphflow as gf
from graphflow.errors import GraphflowError, UnsupportedOpError

RTOL, ATOL = 1e-3, 1e-5


def load_cases(names=None, keyword: str | None = None) -> list:
    """The onnx wheel's node test cases (optionally only `names`, or those containing keyword)."""
    from onnx.backend.test.loader import load_model_tests
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        cases = load_model_tests(kind="node")
    if names is not None:
        wanted = set(names)
        cases = [c for c in cases if c.name in wanted]
    if keyword:
        words = keyword.split(",")
        cases = [c for c in cases if any(w in c.name for w in words)]
    return cases


def case_model(case):
    import onnx
    if case.model is not None:
        return case.model
    return onnx.load(f"{case.model_dir}/model.onnx")


def case_data(case) -> list:
    """[(inputs, expected outputs)] as lists of arrays."""
    if case.data_sets is not None:
        from onnx import TensorProto, numpy_helper

        def arrays(values):
            return [numpy_helper.to_array(v) if isinstance(v, TensorProto) else v for v in values]
        return [(arrays(i), arrays(o)) for i, o in case.data_sets]
    import glob

    import onnx
    from onnx import numpy_helper
    out = []
    for d in sorted(glob.glob(f"{case.model_dir}/test_data_set_*")):
        def read(prefix, d=d):
            arrays = []
            for p in sorted(glob.glob(f"{d}/{prefix}_*.pb"), key=lambda p: int(p.split("_")[-1][:-3])):
                t = onnx.TensorProto()
                with open(p, "rb") as f:
                    t.ParseFromString(f.read())
                arrays.append(numpy_helper.to_array(t))
            return arrays
        out.append((read("input"), read("output")))
    return out


def same(actual, expected) -> str | None:
    """None when actual passes against expected, else why not."""
    if not isinstance(expected, np.ndarray | np.generic):
        return f"expected a {type(expected).__name__}"
    expected = np.asarray(expected)
    actual = np.asarray(actual)
    if actual.shape != expected.shape:
        return f"shape {actual.shape} != {expected.shape}"
    if actual.dtype != expected.dtype:
        return f"dtype {actual.dtype} != {expected.dtype}"
    if expected.dtype.kind in "fc":
        if not np.allclose(actual, expected, rtol=RTOL, atol=ATOL, equal_nan=True):
            err = np.nanmax(np.abs(actual.astype(np.float64) - expected))
            return f"values differ (max abs error {err:.3g})"
        return None
    if not np.array_equal(actual, expected):
        return "values differ"
    return None


def run_case(case, device: str, model=None) -> tuple[str, str]:
    """(outcome, detail): outcome is passed | unsupported | refused | wrong | crashed."""
    try:
        m = model if model is not None else gf.onnx.import_model(case_model(case))
        for inputs, expected in case_data(case):
            if len(inputs) != len(m.inputs) or len(expected) != len(m.outputs):
                return "refused", "input/output count differs from the model's"
            with np.errstate(all="ignore"):
                got = m.run(dict(zip(m.inputs, inputs)), device=device)
            for name, exp in zip(m.outputs, expected):
                why = same(got[name], exp)
                if why:
                    return "wrong", f"output {name!r}: {why}"
        return "passed", ""
    except UnsupportedOpError as e:
        return "unsupported", str(e)
    except GraphflowError as e:
        return "refused", f"{type(e).__name__}: {e}"
    except Exception as e:  # noqa: BLE001 - a crash is what this script counts
        return "crashed", f"{type(e).__name__}: {e}"


LIGHT = {"bvlc_alexnet": 1e-3, "densenet121": 2e-3, "inception_v1": 1e-3, "inception_v2": 1e-3,
         "resnet50": 1e-3, "shufflenet": 1e-3, "squeezenet": 1e-3, "vgg19": 1e-3,
         "zfnet512": 1e-3}


def run_light(name: str, device: str) -> tuple[str, str]:
    """One of the light models shipped with onnx's test data, run as onnx's backend runner does:
    input arange(n)/n, expected output from light_<name>_output_0.pb, rtol as onnx sets it."""
    import os

    import onnx
    from onnx import numpy_helper
    base = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light",
                        f"light_{name}")
    try:
        m = gf.onnx.import_model(base + ".onnx")
        feeds = {}
        for key, t in m.inputs.items():
            shape = [1 if d is None else d for d in t.shape]
            feeds[key] = (np.arange(np.prod(shape)).reshape(shape) / np.prod(shape)).astype(np.float32)
        t = onnx.TensorProto()
        with open(base + "_output_0.pb", "rb") as f:
            t.ParseFromString(f.read())
        expected = numpy_helper.to_array(t)
        got = next(iter(m.run(feeds, device=device).values()))
        if got.shape != expected.shape:
            return "wrong", f"shape {got.shape} != {expected.shape}"
        if not np.allclose(got, expected, rtol=LIGHT[name], atol=1e-7):
            return "wrong", f"max abs error {np.abs(got - expected).max():.3g}"
        return "passed", ""
    except UnsupportedOpError as e:
        return "unsupported", str(e)
    except GraphflowError as e:
        return "refused", f"{type(e).__name__}: {e}"
    except Exception as e:  # noqa: BLE001
        return "crashed", f"{type(e).__name__}: {e}"


def missing_op(detail: str) -> str:
    m = re.search(r"ONNX op (\w+)", detail)
    reason = "dtype" if "ONNX dtype" in detail else "op" if "no converter" in detail else "attr"
    return f"{m.group(1) if m else '?'} ({reason})"


def case_ops(case) -> list[str]:
    return sorted({n.op_type for n in case_model(case).graph.node})


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--devices", default="reference,cpu")
    p.add_argument("-k", dest="keyword", default=None,
                   help="only cases whose name contains this (or any of a,b,c)")
    p.add_argument("--verbose", action="store_true", help="print every case that does not pass")
    p.add_argument("--light", action="store_true",
                   help="run the light models shipped with onnx's test data instead")
    p.add_argument("--write-manifest", default=None,
                   help="write the cases that pass on every device (with their ops) to this file")
    args = p.parse_args(argv)
    devices = args.devices.split(",")
    gf.reset_default_graph()
    if args.light:
        bad = 0
        for name in LIGHT:
            for device in devices:
                started = time.time()
                outcome, detail = run_light(name, device)
                bad += outcome != "passed"
                print(f"  light_{name:13s} {device:9s} {outcome:8s} {time.time() - started:6.1f} s "
                      f"{detail[:200]}", flush=True)
        return 1 if bad else 0
    cases = load_cases(keyword=args.keyword)
    results = {d: collections.Counter() for d in devices}
    missing = collections.Counter()
    passed_all, started = {}, time.time()
    for case in cases:
        try:
            model = gf.onnx.import_model(case_model(case))
        except Exception:  # noqa: BLE001 - run_case reports it per device
            model = None
        outcomes = {}
        for device in devices:
            outcome, detail = run_case(case, device, model)
            outcomes[device] = outcome
            results[device][outcome] += 1
            if outcome == "unsupported" and device == devices[0]:
                missing[missing_op(detail)] += 1
            if outcome != "passed" and (args.verbose or outcome in ("wrong", "crashed")):
                print(f"  {device:9s} {outcome:11s} {case.name}: {detail[:300]}", flush=True)
        if all(o == "passed" for o in outcomes.values()):
            passed_all[case.name] = case_ops(case)
    total = len(cases)
    print(f"\nONNX node conformance (onnx backend node tests, {total} cases, "
          f"{time.time() - started:.0f} s)")
    for device in devices:
        r = results[device]
        print(f"  {device:9s} passed {r['passed']:5d} ({100 * r['passed'] / max(total, 1):.1f}%)  "
              f"unsupported {r['unsupported']:5d}  refused {r['refused']:4d}  "
              f"wrong {r['wrong']:3d}  crashed {r['crashed']:3d}")
    print("  top missing (cases): " + ", ".join(f"{k} {v}" for k, v in missing.most_common(25)))
    if args.write_manifest:
        with open(args.write_manifest, "w") as f:
            json.dump({"onnx_version": __import__("onnx").__version__, "devices": devices,
                       "cases": dict(sorted(passed_all.items()))}, f, indent=1)
            f.write("\n")
        print(f"  wrote {len(passed_all)} passing cases to {args.write_manifest}")
    bad = sum(results[d]["wrong"] + results[d]["crashed"] for d in devices)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
