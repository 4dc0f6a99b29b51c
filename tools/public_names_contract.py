"""An import-linter contract: the source modules import only public names of ``layers``.

``from layers.stack import _helper``, ``import layers._private`` or ``from layers import
_thing`` in a plugin would tie it to what the core may change without notice. The contract
reads each source module's imports (with ``ast``, so imports spread over several lines count
too) and reports every name or module beginning with ``_`` that it takes from the
``public_package``.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path
from typing import Any

from importlinter import Contract, ContractCheck, fields, output


def _source_file(module: str) -> Path | None:
    """The .py file of ``module``, found without importing it (or its package)."""
    top, *rest = module.split(".")
    spec = importlib.util.find_spec(top)  # a top-level lookup imports nothing
    if spec is None:
        return None
    if not rest:
        return Path(spec.origin) if spec.origin and spec.origin.endswith(".py") else None
    for base in spec.submodule_search_locations or ():
        path = Path(base, *rest)
        for candidate in (path.with_suffix(".py"), path / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None


def _private(dotted: str) -> bool:
    return any(part.startswith("_") and not part.startswith("__") for part in dotted.split("."))


class PublicNamesContract(Contract):
    """Options: ``source_modules`` (packages whose modules are checked) and
    ``public_package`` (the package they may use only the public names of)."""

    type_name = "public names"

    source_modules = fields.ListField(subfield=fields.StringField())
    public_package = fields.StringField()

    def check(self, graph: Any, verbose: bool) -> ContractCheck:
        package = str(self.public_package)
        violations: list[str] = []
        for source in self.source_modules:  # type: ignore[attr-defined]
            modules = {str(source)} | set(graph.find_descendants(str(source)))
            for module in sorted(modules):
                path = _source_file(module)
                if path is None:
                    continue
                tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
                for node in ast.walk(tree):
                    if isinstance(node, ast.Import):
                        for alias in node.names:
                            if alias.name.split(".")[0] == package and _private(alias.name):
                                violations.append(f"{module}:{node.lineno} imports {alias.name}")
                    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                        if node.module.split(".")[0] != package:
                            continue
                        if _private(node.module):
                            violations.append(
                                f"{module}:{node.lineno} imports from {node.module}")
                        for alias in node.names:
                            if alias.name.startswith("_") and not alias.name.startswith("__"):
                                violations.append(
                                    f"{module}:{node.lineno} imports {node.module}.{alias.name}")
        return ContractCheck(kept=not violations, metadata={"violations": violations})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for line in check.metadata["violations"]:
            output.print_error(f"-   {line} (a private name of {self.public_package})",
                               bold=False)
            output.new_line()
