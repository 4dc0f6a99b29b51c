"""The architecture contracts (.importlinter, checked by `make test` through `make
architecture`): the public-names contract, our own, fails for a plugin that imports a private
name of layers (the forbidden and independence contracts are import-linter's own)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_a_plugin_importing_private_names_of_layers_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "tools"))
    from public_names_contract import PublicNamesContract

    pkg = tmp_path / "layers_badplugin"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(textwrap.dedent("""\
        from layers.stack import (
            Stack,
            _CountingReporter,
        )
        import layers._hidden
        from layers import hookimpl, __version__
    """))
    (pkg / "good.py").write_text("from layers.stack import Stack\nimport layers.wire\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    class Graph:
        def find_descendants(self, module: str) -> set[str]:
            return {"layers_badplugin.good"}

    contract = PublicNamesContract(
        name="public", session_options={},
        contract_options={"source_modules": ["layers_badplugin"], "public_package": "layers"})
    check = contract.check(Graph(), verbose=False)
    sys.modules.pop("layers_badplugin", None)
    assert not check.kept
    assert check.metadata["violations"] == [
        "layers_badplugin:1 imports layers.stack._CountingReporter",
        "layers_badplugin:5 imports layers._hidden",
    ]
