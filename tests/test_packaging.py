"""A plain ``pip install .`` (not editable) must ship every module: the package list is explicit."""
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10: the same parser as a package
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]


def test_every_python_package_under_src_is_listed_for_the_wheel():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    dirs = {name: ROOT / path for name, path in setuptools["package-dir"].items()}
    found = set()
    for top, base in dirs.items():
        for init in base.rglob("*.py"):
            if "__pycache__" in init.parts:
                continue
            rel = init.parent.relative_to(base)
            found.add(".".join((top, *rel.parts)))
    missing = sorted(found - listed)
    assert not missing, f"pyproject.toml [tool.setuptools] packages lacks {missing}: a non-editable install would miss them"


def test_every_console_script_names_a_function_that_exists():
    """``aebench`` and ``aebench-compare`` are generated from these names at install time: a typo
    breaks the installed command while ``python -m aebench`` (what most tests run) keeps working."""
    import importlib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) == {"aebench", "aebench-compare", "aebench-encode", "aebench-export"}
    for name, target in scripts.items():
        module, _, attr = target.partition(":")
        assert callable(getattr(importlib.import_module(module), attr, None)), f"{name} = {target!r} names nothing callable"
    main_py = (ROOT / "src" / "aebench" / "__main__.py").read_text()
    assert scripts["aebench"].split(":")[1] + "()" in main_py, "python -m aebench must run what the aebench command runs"
