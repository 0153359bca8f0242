"""The remote-code generator on a small package: imports followed generically (absolute,
relative, through a package's re-exports, inside functions, with aliases), and refusals."""

import importlib
import sys
import textwrap

import pytest

from armdistill.export.remote_code import generate

FILES = {
    "__init__.py": "",
    "sub/__init__.py": "from .impl import helper as public_helper\n",
    "sub/impl.py": "def helper(x):\n    return x + 1\n",
    "base.py": '"""The base value."""\n\nfrom __future__ import annotations\n\nVALUE = 40\n',
    "lazy.py": "def later():\n    from fakepkg.base import VALUE as V\n    return V + 2\n",
    "conf.py": "class Conf:\n    size = 3\n",
    "model.py": textwrap.dedent("""\
        from __future__ import annotations

        from fakepkg.conf import Conf
        from fakepkg.sub import public_helper

        from .lazy import later


        def answer() -> int:
            return public_helper(later() - 1) + Conf.size - 3
        """),
    "clash_a.py": "X = 1\n",
    "clash_b.py": "X = 2\n",
    "clash.py": "from fakepkg.clash_a import X as A\nfrom fakepkg.clash_b import X\n",
    "whole.py": "import fakepkg.base\n",
}
ROOTS = {"fakepkg.model": "modeling_x", "fakepkg.conf": "configuration_x"}


@pytest.fixture
def fakepkg(tmp_path, monkeypatch):
    for name, text in FILES.items():
        path = tmp_path / "src" / "fakepkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    yield tmp_path
    for name in [m for m in sys.modules if m.split(".")[0] in ("fakepkg", "generated")]:
        del sys.modules[name]


def test_generated_files_run_without_the_package(fakepkg, monkeypatch):
    out = fakepkg / "out" / "generated"
    out.mkdir(parents=True)
    (out / "__init__.py").write_text("")
    for root, stem in ROOTS.items():
        (out / f"{stem}.py").write_text(generate(root, ROOTS))
    code = (out / "modeling_x.py").read_text()
    assert "from .configuration_x import Conf" in code
    assert code.count("from __future__ import annotations") == 1 and "# The base value." in code
    monkeypatch.syspath_prepend(str(fakepkg / "out"))
    for name in [m for m in sys.modules if m.split(".")[0] == "fakepkg"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "fakepkg", None)  # the source package is gone
    assert importlib.import_module("generated.modeling_x").answer() == 42


def test_a_name_defined_in_two_inlined_modules_is_refused(fakepkg):
    with pytest.raises(RuntimeError, match="'X' is defined in both fakepkg.clash_a and fakepkg.clash_b"):
        generate("fakepkg.clash", {"fakepkg.clash": "modeling_x"})


def test_module_imports_are_refused(fakepkg):
    with pytest.raises(RuntimeError, match="not 'import fakepkg...'"):
        generate("fakepkg.whole", {"fakepkg.whole": "modeling_x"})
