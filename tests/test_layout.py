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


# ---- the product is not built on its tools ---------------------------------------------------------

# cli.py starts the embedded simulator, the simulator's client and the demo data when a command
# asks for them (its docstring says so); nothing else of the product may import the tools.
TOOLS_ALLOWED = {"smsgate/cli.py"}


def product_modules() -> list[Path]:
    """Every module of the product: smsgate/ without smsgate/tools/, handlers/ and store/."""
    found = [*(ROOT / "handlers").rglob("*.py"), *(ROOT / "store").rglob("*.py")]
    found += [path for path in (ROOT / "smsgate").rglob("*.py")
              if "tools" not in path.relative_to(ROOT).parts]
    return sorted(found)


def test_the_product_never_imports_the_tools() -> None:
    modules = product_modules()
    assert ROOT / "smsgate" / "cli.py" in modules and ROOT / "store" / "db.py" in modules
    found = [
        (str(path.relative_to(ROOT)), name)
        for path in modules
        if str(path.relative_to(ROOT)) not in TOOLS_ALLOWED
        for name in sorted(imported_modules(path.read_text(encoding="utf-8"), path))
        if within(name, "smsgate.tools")
    ]
    assert found == []


# ---- small modules, small classes ------------------------------------------------------------------

MAX_LINES = 500
MAX_ATTRIBUTES = 12
# Classes allowed more attributes, each with its reason (docs/architecture.md repeats this list).
ATTRIBUTES_ALLOWED = {
    "smsgate/config.py:SmscConfig": "mirrors the [smsc] section of config.toml, one field a key",
    "smsgate/smpp/codec.py:ShortMessage": "the fields of an SMPP 3.4 deliver_sm / submit_sm, one a field",
    "smsgate/metrics.py:Metrics": "one attribute a metric of /metrics (README, Operations, lists them)",
}


def instance_attributes(cls: ast.ClassDef) -> set[str]:
    """A dataclass's or NamedTuple's fields, else the `self.x = ...` of its __init__."""
    fields = {
        node.target.id for node in cls.body
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
        and "ClassVar" not in ast.unparse(node.annotation)
    }
    decorators = [ast.unparse(decorator) for decorator in cls.decorator_list]
    bases = [ast.unparse(base) for base in cls.bases]
    if any("dataclass" in decorator for decorator in decorators) or any("NamedTuple" in b for b in bases):
        return fields
    names: set[str] = set()
    for node in cls.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == "__init__":
            for statement in ast.walk(node):
                targets: list[ast.expr] = []
                if isinstance(statement, ast.Assign):
                    targets = statement.targets
                elif isinstance(statement, ast.AnnAssign | ast.AugAssign):
                    targets = [statement.target]
                for target in targets:
                    for part in ast.walk(target):
                        if (isinstance(part, ast.Attribute) and isinstance(part.value, ast.Name)
                                and part.value.id == "self"):
                            names.add(part.attr)
    return names


def test_no_product_module_is_over_500_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): lines for path in product_modules()
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}


def test_no_product_class_holds_more_than_12_attributes() -> None:
    large: dict[str, int] = {}
    for path in product_modules():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                where = f"{path.relative_to(ROOT)}:{node.name}"
                count = len(instance_attributes(node))
                if count > MAX_ATTRIBUTES and where not in ATTRIBUTES_ALLOWED:
                    large[where] = count
    assert large == {}


def test_attributes_are_counted_in_init_and_in_dataclass_fields() -> None:
    source = '''
@dataclass(frozen=True)
class Settings:
    a: int
    b: ClassVar[int] = 0
    c: str = ""

class Link:
    kind = "smpp"
    def __init__(self) -> None:
        self.x = 1
        self.y: int = 2
        self.x += 1
        self.a, self.b = 3, 4
        other.z = 5
    def later(self) -> None:
        self.w = 6
'''
    settings, link = [node for node in ast.parse(source).body if isinstance(node, ast.ClassDef)]
    assert instance_attributes(settings) == {"a", "c"}
    assert instance_attributes(link) == {"x", "y", "a", "b"}
    for allowed, reason in ATTRIBUTES_ALLOWED.items():
        path, name = allowed.split(":")
        assert reason and f"class {name}" in (ROOT / path).read_text(encoding="utf-8"), allowed
