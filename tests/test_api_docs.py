"""Every public callable of graphflow's API has a docstring; the LICENSE matches pyproject."""
import inspect
import os

import pytest

import graphflow as gf

ROOT = os.path.join(os.path.dirname(__file__), "..")
MODULES = {"gf": gf, "gf.nn": gf.nn, "gf.train": gf.train, "gf.initializers": gf.initializers,
           "gf.io": gf.io, "gf.errors": gf.errors, "gf.distributed": gf.distributed,
           "gf.viz": gf.viz}


def public_names(module):
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n, v in vars(module).items() if not n.startswith("_")
                 and getattr(v, "__module__", None) == module.__name__]
    return sorted(names)


def public_callables():
    """(qualified name, object) of every public function, class and public method."""
    for prefix, module in MODULES.items():
        for name in public_names(module):
            obj = getattr(module, name)
            if inspect.ismodule(obj) or not callable(obj) or isinstance(obj, gf.DType):
                continue
            yield f"{prefix}.{name}", obj
            if inspect.isclass(obj):
                for attr, member in vars(obj).items():
                    if attr.startswith("_") or not (inspect.isfunction(member)
                                                    or isinstance(member, property)):
                        continue
                    yield f"{prefix}.{name}.{attr}", member


def test_every_public_callable_has_a_docstring():
    missing = sorted({q for q, obj in public_callables() if not (inspect.getdoc(obj) or "").strip()})
    assert not missing, f"public callables without a docstring: {', '.join(missing)}"


def test_the_api_is_found():
    found = dict(public_callables())
    for name in ("gf.reduce_sum", "gf.nn.conv2d", "gf.train.Optimizer.minimize",
                 "gf.initializers.he_normal", "gf.io.load_graph", "gf.Session.run"):
        assert name in found


def test_license_is_mit_as_pyproject_says():
    with open(os.path.join(ROOT, "pyproject.toml")) as f:
        assert 'license = { text = "MIT" }' in f.read()
    with open(os.path.join(ROOT, "LICENSE")) as f:
        text = f.read()
    assert text.startswith("MIT License") and "the graphflow authors" in text


@pytest.mark.parametrize("prefix", sorted(MODULES))
def test_modules_have_docstrings(prefix):
    assert (MODULES[prefix].__doc__ or "").strip()


def test_every_name_in_docs_api_md_exists():
    import re
    with open(os.path.join(ROOT, "docs", "api.md")) as f:
        lines = [line for line in f if not line.startswith("Planned")]
    names = sorted(set(re.findall(r"\bgf\.[A-Za-z_][\w.]*\w", "".join(lines))))
    missing = []
    for name in names:
        obj = gf
        for part in name.split(".")[1:]:
            obj = getattr(obj, part, None)
        if obj is None:
            missing.append(name)
    assert len(names) > 40 and not missing, f"docs/api.md names what gf lacks: {missing}"
