"""Every public class, method and function has a numpydoc docstring that documents its
parameters and what it returns (numpydoc's validator, the checks below)."""
import inspect

import pytest

import fastmlp

numpydoc_validate = pytest.importorskip("numpydoc.validate", reason="needs numpydoc (dev)")

#: numpydoc's checks that are not required here: examples, see-also sections, extended
#: summaries, and punctuation/typesetting rules of descriptions.
NOT_REQUIRED = {"EX01", "SA01", "ES01", "GL01", "GL02", "SS05", "SS06", "RT02", "PR09", "RT05",
                "PR08", "PR06", "SA04", "GL03", "YD01"}


def public_names():
    modules = {"fastmlp": fastmlp}
    try:
        from fastmlp import onnx

        modules["fastmlp.onnx"] = onnx
    except ImportError:  # the [onnx] extra is not installed
        pass
    names = []
    for prefix, module in modules.items():
        exported = getattr(module, "__all__", None) or [
            n for n, v in vars(module).items() if not n.startswith("_")
            and inspect.isfunction(v) and v.__module__ == module.__name__]
        for name in exported:
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            names.append(f"{prefix}.{name}")
            if inspect.isclass(obj):
                for base in obj.__mro__:
                    if not base.__module__.startswith("fastmlp"):
                        continue
                    for attr, value in vars(base).items():
                        method = f"{prefix}.{name}.{attr}"
                        public = not attr.startswith("_") and method not in names
                        if public and (inspect.isfunction(value) or isinstance(value, property)
                                       or hasattr(value, "fn")):  # available_if
                            names.append(method)
    return names


def test_the_public_api_is_found():
    names = public_names()
    for name in ("fastmlp.MLPClassifier.fit", "fastmlp.MLPClassifier.partial_fit",
                 "fastmlp.MLPRegressor.predict", "fastmlp.save", "fastmlp.load"):
        assert name in names


@pytest.mark.parametrize("name", public_names())
def test_docstring_is_numpydoc(name):
    errors = [f"{code}: {message}" for code, message in numpydoc_validate.validate(name)["errors"]
              if code not in NOT_REQUIRED]
    assert not errors, "\n".join(errors)


def _callables():
    import pydoc

    found = []
    for name in public_names():
        obj = pydoc.locate(name)
        obj = getattr(obj, "fn", obj)  # available_if
        if inspect.isfunction(obj):
            found.append((name, obj))
    return found


@pytest.mark.parametrize("name, function", _callables(), ids=[n for n, _ in _callables()])
def test_public_functions_and_methods_are_typed(name, function):
    """py.typed promises type checkers hints: every public function and method has them."""
    signature = inspect.signature(function)
    assert signature.return_annotation is not inspect.Signature.empty, f"{name}: no return type"
    untyped = [p.name for p in signature.parameters.values() if p.name not in ("self", "cls")
               and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
               and p.annotation is inspect.Parameter.empty]
    assert not untyped, f"{name}: parameters without a type: {untyped}"
