"""The layers hold because this test says so (docs/architecture.md, "Rules that keep it easy
to change"): the domain knows no HTTP and no SQL library, protocol packages share HTTP helpers
through web/ rather than borrowing from each other, and the admin API and the CLI go through
the domain services instead of the store.

Imports are read from the source (ast), so relative imports and imports inside functions count
as much as the ones at the top of a module.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "est_ca"

DOMAIN = ("est_ca.registration", "est_ca.ca", "est_ca.revocation")
PROTOCOLS = ("est_ca.est", "est_ca.relying_party", "est_ca.admin.routes", "est_ca.console")


@dataclass(frozen=True)
class Import:
    """One imported thing: `module` always, `name` for `from module import name`."""

    module: str
    name: str | None
    line: int

    def targets(self) -> tuple[str, ...]:
        """What the import reaches: the module and, for a `from` import, module.name (which may
        be a submodule)."""
        if self.name is None:
            return (self.module,)
        return (self.module, f"{self.module}.{self.name}")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(source: str, module: str, *, is_package: bool = False) -> list[Import]:
    """Every import in the source, wherever it stands, relative ones resolved against `module`."""
    found: list[Import] = []
    package = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [Import(alias.name, None, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                origin = ".".join([*base, *([node.module] if node.module else [])])
            else:
                origin = node.module or ""
            found += [Import(origin, alias.name, node.lineno) for alias in node.names]
    return found


def _sources() -> dict[str, tuple[Path, list[Import]]]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = _module_name(path)
        text = path.read_text(encoding="utf-8")
        modules[name] = (path, imports_of(text, name, is_package=path.name == "__init__.py"))
    return modules


SOURCES = _sources()


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _violations(
    importers: tuple[str, ...], forbidden: tuple[str, ...], *, exact: bool = False
) -> str:
    """One line per import of a `forbidden` module by a module in (or, `exact`, named in)
    `importers`; empty if none."""
    found = []
    for module, (path, imports) in SOURCES.items():
        if exact and module not in importers:
            continue
        if not exact and not any(_within(module, importer) for importer in importers):
            continue
        for item in imports:
            for target in item.targets():
                hit = next((f for f in forbidden if _within(target, f)), None)
                if hit is not None:
                    where = f"{path.relative_to(SRC.parent)}:{item.line}"
                    found.append(f"{where} imports {target} ({hit} is off limits)")
                    break
    return "\n".join(dict.fromkeys(found))


def test_the_import_reader_sees_relative_and_nested_imports() -> None:
    source = textwrap.dedent(
        """
        from . import wire
        from ..web import middleware
        def later():
            import aiohttp.web
            from sqlalchemy.exc import IntegrityError
        """
    )
    seen = {t for i in imports_of(source, "est_ca.est.routes") for t in i.targets()}
    assert {
        "est_ca.est.wire",
        "est_ca.web.middleware",
        "aiohttp.web",
        "sqlalchemy.exc.IntegrityError",
    } <= seen


def test_every_layer_named_here_exists() -> None:
    """A renamed package would otherwise make its rules pass by checking nothing."""
    for name in (*DOMAIN, *PROTOCOLS, "est_ca.web", "est_ca.cli", "est_ca.bootstrap"):
        assert name in SOURCES, name


def test_the_domain_knows_no_http_and_no_sql_library() -> None:
    """registration/, ca/ and revocation/ reach the database only through est_ca.store (whose
    sqlalchemy stays inside it) and never see HTTP, the web plumbing or a protocol package."""
    forbidden = (
        "aiohttp",
        "yarl",
        "sqlalchemy",
        "est_ca.web",
        "est_ca.server",
        *PROTOCOLS,
    )
    assert _violations(DOMAIN, forbidden) == ""


def test_only_the_http_layers_import_aiohttp() -> None:
    """The domain above is the rule that matters; this one keeps HTTP out of everything else
    too (admin's services, the audit trail, the throttle, the CLI outside `serve`)."""
    http = (*PROTOCOLS, "est_ca.web", "est_ca.server", "est_ca.client")
    others = tuple(m for m in SOURCES if not any(_within(m, h) for h in http))
    assert _violations(others, ("aiohttp", "yarl"), exact=True) == ""


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_protocol_packages_do_not_borrow_from_each_other(protocol: str) -> None:
    """Shared HTTP helpers live in est_ca.web; one protocol's module is not another's library."""
    others = tuple(p for p in PROTOCOLS if p != protocol)
    assert _violations((protocol,), others) == ""


def test_the_admin_api_neither_writes_the_audit_trail_nor_reads_the_store() -> None:
    """Its handlers parse, call Administration/Tokens, and render: audit events and the clock
    they are stamped with belong to the domain services."""
    _, imports = SOURCES["est_ca.admin.routes"]
    writing = [
        f"src/est_ca/admin/routes.py:{i.line} imports {i.module}.{i.name} (only Actor may be)"
        for i in imports
        if any(_within(t, "est_ca.audit") for t in i.targets())
        and not (i.module == "est_ca.audit" and i.name == "Actor")
    ]
    store_or_clock = _violations(("est_ca.admin.routes",), ("est_ca.store", "est_ca.clock"))
    assert "\n".join(filter(None, [store_or_clock, *writing])) == ""


def test_the_cli_goes_through_the_domain_services() -> None:
    """Neither by importing the store nor by reaching for the one Service.open holds."""
    path, _ = SOURCES["est_ca.cli"]
    reaching = [
        f"src/est_ca/cli.py:{node.lineno} uses .store"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Attribute) and node.attr == "store"
    ]
    imports = _violations(("est_ca.cli",), ("est_ca.store",))
    assert "\n".join(filter(None, [imports, *reaching])) == ""


def test_first_start_files_need_no_web_layer() -> None:
    assert _violations(("est_ca.bootstrap",), ("est_ca.web", "aiohttp")) == ""


def test_importing_the_domain_loads_no_http_library() -> None:
    """The proof by running it: every domain module imported in a fresh interpreter leaves
    aiohttp unloaded. (sqlalchemy is loaded: est_ca.store is how the domain persists; a
    Protocol seam per aggregate is the step that would let the domain do without it.)"""
    modules = sorted(m for m in SOURCES if any(_within(m, d) for d in DOMAIN))
    program = "\n".join(
        [
            "import importlib, sys",
            f"for name in {modules!r}:",
            "    importlib.import_module(name)",
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('aiohttp', 'yarl')"
            " or m.startswith(('est_ca.web', 'est_ca.est', 'est_ca.relying_party',"
            " 'est_ca.admin.routes'))))",
        ]
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
