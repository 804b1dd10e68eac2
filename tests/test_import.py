import subprocess
import sys


def test_import_kmq_is_light():
    code = (
        "import sys, kmq; kmq.RunConfig; kmq.select;"
        "mods = ('torch', 'faiss', 'sentence_transformers', 'datasets', 'transformers');"
        "heavy = [m for m in mods if m in sys.modules];"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
