"""Architecture rules of the core (README "Architecture"), each checked here:

- only the catalog (imgfinder/core/catalog/) executes SQL;
- imgfinder.core imports no Qt (every module, imported in a fresh interpreter);
- no module under imgfinder/core is over 600 lines;
- extraction does not load the duplicate finder (the signature lives in core/imagesig.py).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "imgfinder"
CATALOG = PKG / "core" / "catalog"

_SQL = re.compile(
    r"\b(SELECT\s.+\sFROM|INSERT\s+(OR\s+\w+\s+)?INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|"
    r"CREATE\s+(TABLE|INDEX|UNIQUE)|ALTER\s+TABLE|DROP\s+(TABLE|INDEX)|PRAGMA\s+\w+)\b",
    re.DOTALL,
)
_EXEC = {"execute", "executemany", "executescript"}


def sql_uses(source: str) -> list[str]:
    """Where a module executes SQL: `.execute*()` calls, `sqlite3.connect`, SQL text."""
    out = []
    tree = ast.parse(source)
    # docstrings and other bare strings are prose, not statements
    prose = {
        id(n.value)
        for n in ast.walk(tree)
        if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)
    }
    for node in ast.walk(tree):
        if id(node) in prose:
            continue
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            name = node.func.attr
            owner = node.func.value
            if name in _EXEC or (
                name == "connect" and isinstance(owner, ast.Name) and owner.id == "sqlite3"
            ):
                out.append(f"line {node.lineno}: .{name}()")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if _SQL.search(node.value):
                out.append(f"line {node.lineno}: SQL text {node.value.strip()[:40]!r}")
    return out


def test_the_sql_rule_catches_sql():
    assert sql_uses("c.execute('x')") and sql_uses("sqlite3.connect(p)")
    assert sql_uses("q = 'SELECT id FROM images WHERE x=?'")
    assert sql_uses("q = f'UPDATE images SET {c}=?'")
    assert not sql_uses("label = 'Select a folder'; pool.submit(f)")
    assert not sql_uses('def f():\n    """Cheap (`PRAGMA data_version`): poll it."""')


def test_only_the_catalog_executes_sql():
    offenders = {}
    for f in sorted(PKG.rglob("*.py")):
        if f.is_relative_to(CATALOG):
            continue
        found = sql_uses(f.read_text(encoding="utf-8"))
        if found:
            offenders[str(f.relative_to(ROOT))] = found
    assert offenders == {}, f"SQL outside imgfinder/core/catalog: {offenders}"


def _python(code: str) -> str:
    """Run `code` in a fresh interpreter (nothing imported yet); its stdout, stripped."""
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


def _core_modules() -> list[str]:
    mods = []
    for f in sorted((PKG / "core").rglob("*.py")):
        parts = list(f.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods.append(".".join(parts))
    return mods


def test_no_core_module_imports_qt():
    mods = _core_modules()
    assert len(mods) > 40 and "imgfinder.core.library" in mods
    code = (
        "import importlib, sys\n"
        f"for m in {mods!r}:\n"
        "    importlib.import_module(m)\n"
        "qt = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('PySide6', 'PyQt5', 'PyQt6', 'shiboken6', 'qtpy', 'superqt'))\n"
        "print(','.join(qt))\n"
    )
    out = _python(code)
    assert out == "", f"imgfinder.core loaded Qt: {out}"


def test_extraction_does_not_load_the_duplicate_finder():
    """The duplicate signature is computed by extraction from core/imagesig.py (and its
    border trimming from core/imageborder.py), so indexing never loads core/dupes for it."""
    code = (
        "import sys\n"
        "from PIL import Image\n"
        "import imgfinder.core.extract as ex\n"
        "ex._dupe_signature(Image.new('RGB', (80, 60), (10, 200, 30)), 'x.png')\n"
        "print(sorted(m for m in sys.modules if m.startswith('imgfinder.core.dupes')))\n"
    )
    assert _python(code) == "[]"


def test_no_core_module_is_over_600_lines():
    long = {}
    for f in sorted((PKG / "core").rglob("*.py")):
        n = len(f.read_text(encoding="utf-8").splitlines())
        if n > 600:
            long[str(f.relative_to(ROOT))] = n
    assert long == {}
