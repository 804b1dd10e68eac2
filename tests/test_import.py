import inspect
import subprocess
import sys

import kmq


def test_import_kmq_is_light():
    code = (
        "import sys, kmq; kmq.RunConfig; kmq.select; kmq.METHODS;"
        "mods = ('torch', 'faiss', 'sentence_transformers', 'datasets', 'transformers');"
        "heavy = [m for m in mods if m in sys.modules];"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_select_is_a_plain_function_with_its_signature():
    from kmq.pipeline import select

    assert kmq.select is select and inspect.isfunction(kmq.select)
    params = inspect.signature(kmq.select).parameters
    assert {"pool", "budget", "method", "clusters", "embedder", "seed", "out", "config"} <= set(params)
    assert params["budget"].kind is inspect.Parameter.KEYWORD_ONLY
    assert "budget" in kmq.select.__doc__


def test_methods_package_is_not_the_select_function():
    import kmq.methods

    assert kmq.select is not kmq.methods and not callable(kmq.methods)
    assert kmq.METHODS is kmq.methods.METHODS and {"kmq", "random"} <= set(kmq.METHODS)
    assert "select" in dir(kmq) and "METHODS" in dir(kmq)
