"""The option tables are what users read for defaults: they must say what the config holds.

docs/options.md has every option; the README's Options table the common ones.
"""
from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

import aebench.cli  # noqa: F401  (registers the schema and resolvers)

REPO = Path(__file__).resolve().parents[1]
README, OPTIONS_DOC = REPO / "README.md", REPO / "docs" / "options.md"
TICKED = re.compile(r"`([^`]+)`")
# A row whose meaning starts "conv:" or "dae:" (or "ae, dae, sae:") holds the default of that choice.
CHOICES = {"mlp": "arch=mlp", "conv": "arch=conv", "ae": "model=ae", "vae": "model=vae", "dae": "model=dae",
           "sae": "model=sae"}


def option_rows(path: Path = OPTIONS_DOC) -> list[tuple[str, str, str]]:
    """(option, default, meaning) cells of every row of the first table after "### Options" (or in the file)."""
    after = path.read_text().split("### Options", 1)[-1].splitlines()
    start = next(i for i, line in enumerate(after) if line.startswith("|"))
    table = []
    for line in after[start + 2 :]:  # past the header and its rule
        if not line.startswith("|"):
            break
        table.append(tuple(cell.strip() for cell in line.split("|")[1:4]))
    return table


def literal(text: str):
    value = yaml.safe_load(text)
    if isinstance(value, str):  # YAML 1.1 reads 2e-3 as a string
        try:
            return float(value)
        except ValueError:
            pass
    return value


@functools.cache  # one composition per choice, not per row
def composed(*overrides: str) -> dict:
    with initialize_config_module(version_base="1.3", config_module="aebench.conf"):
        return OmegaConf.to_container(compose("config", overrides=list(overrides)), resolve=True)


@pytest.mark.parametrize("path, at_least", [(OPTIONS_DOC, 44), (README, 12)], ids=["docs/options.md", "README"])
def test_the_option_tables_give_the_configs_defaults(path, at_least):
    checked = 0
    for option_cell, default_cell, meaning in option_rows(path):
        keys, defaults = TICKED.findall(option_cell), TICKED.findall(default_cell)
        if not defaults or TICKED.sub("", default_cell).strip(" ,"):  # words beside the values ("mlp `[512,256]`, …")
            continue
        if len(defaults) == 1:
            defaults = defaults * len(keys)
        assert len(keys) == len(defaults), option_cell
        prefix = re.match(r"([a-z]+)(?:, [a-z]+)*:", meaning)
        cfg = composed(CHOICES[prefix.group(1)]) if prefix and prefix.group(1) in CHOICES else composed()
        for key, default in zip(keys, defaults):
            node = cfg
            for part in key.split("."):
                node = node[part]
            if isinstance(node, dict):  # a config group: its chosen option's name
                if "name" not in node:  # logger: none of its loggers on
                    assert default == "none" and not any(v.get("enabled") for v in node.values()), key
                    continue
                node = node["name"]
            assert node == literal(default), f"{path.name} says {key} defaults to {default}; the config has {node!r}"
            checked += 1
    assert checked >= at_least, checked  # the table was found and read (44 values in docs/options.md, 12 in the README)


def test_the_per_network_hidden_defaults_are_the_docs():
    row = next(r for r in option_rows() if r[0] == "`arch.hidden`")
    said = dict(re.findall(r"(mlp|conv) `([^`]+)`", row[1]))
    for arch, default in said.items():
        assert composed(f"arch={arch}")["arch"]["hidden"] == literal(default), (arch, default)
    assert set(said) == {"mlp", "conv"}


def test_the_readmes_options_are_rows_of_the_full_table():
    full = {option: default for option, default, _ in option_rows(OPTIONS_DOC)}
    assert len(full) == len(option_rows(OPTIONS_DOC))  # one row per option
    for option, default, _ in option_rows(README):  # the meaning's links differ (README.md sits above docs/)
        assert full.get(option) == default, f"README gives {option} the default {default}; docs/options.md {full.get(option)}"


SRC = REPO / "src" / "aebench"


def layout_section() -> str:
    """The README's Layout: from "Layout —" to the next heading (or the end)."""
    text = README.read_text()
    return text[text.index("\nLayout — "):].split("\n## ", 1)[0]


def test_the_readmes_layout_names_every_module_and_only_modules_that_exist():
    section = layout_section()
    modules = sorted(p.relative_to(SRC).as_posix() for p in SRC.rglob("*.py") if "__pycache__" not in p.parts)
    # a module is named by its path below src/aebench/ ("compare/figures.py" is not "figures.py")
    unnamed = [m for m in modules if not re.search(rf"(?<![\w./]){re.escape(m)}(?!\w)", section)]
    assert not unnamed, f"README.md's Layout does not name {unnamed}: add a line for each"
    tree = section.split("\n    src/aebench/\n", 1)[1]
    tree = tree[: re.search(r"\n    \S", tree).start()]  # up to the next entry beside src/aebench/
    named = set(re.findall(r"(?<![\w./])([\w/]+\.py)(?!\w)", tree))
    assert named >= set(modules) and not named - set(modules), f"README.md's Layout names {sorted(named - set(modules))}, which do not exist"
