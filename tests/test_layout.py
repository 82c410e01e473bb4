"""The layout shows the architecture: which package may import which."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# What the SMPP protocol must never know of: the store, the handlers and the rest of the application.
APPLICATION = ("store", "handlers", "smsgate.services", "smsgate.gateway", "smsgate.router",
               "smsgate.web", "smsgate.tools", "smsgate.linger")


def imported_modules(source: str, path: Path) -> set[str]:
    """Every module the source of a file at path imports; `from a import b` counts as a and a.b."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source, str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against the file's own package
                package = path.relative_to(ROOT).with_suffix("").parts[: -node.level]
                base = ".".join((*package, base) if base else package)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_smpp_imports_nothing_of_the_application() -> None:
    modules = sorted((ROOT / "smsgate" / "smpp").rglob("*.py"))
    assert len(modules) > 2
    found = [
        (str(path.relative_to(ROOT)), name)
        for path in modules
        for name in sorted(imported_modules(path.read_text(encoding="utf-8"), path))
        if any(within(name, package) for package in APPLICATION)
    ]
    assert found == []


def test_the_import_check_sees_every_way_of_importing() -> None:
    # The check above is only as good as imported_modules: it must see each form.
    path = ROOT / "smsgate" / "smpp" / "session.py"
    forms = {
        "import store.db": "store",
        "from smsgate import gateway": "smsgate.gateway",
        "from smsgate.web.app import create_app": "smsgate.web",
        "from .. import services": "smsgate.services",
        "from ..tools import simulator": "smsgate.tools",
        "def f():\n    import handlers.balance": "handlers",
    }
    for source, package in forms.items():
        assert any(within(name, package) for name in imported_modules(source, path)), source
    assert not any(within(name, "store") for name in imported_modules("import storefront", path))
