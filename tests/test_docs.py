"""The README's option table is what users read for defaults: it must say what the config holds."""
from __future__ import annotations

import re
from pathlib import Path

import yaml
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

import aebench.cli  # noqa: F401  (registers the schema and resolvers)

README = Path(__file__).resolve().parents[1] / "README.md"
TICKED = re.compile(r"`([^`]+)`")


def option_rows() -> list[tuple[str, str]]:
    """(option cell, default cell) of every row of the README's Options table."""
    text = README.read_text()
    table = text.split("### Options", 1)[1].split("\n\n", 2)[1]
    rows = [line.split("|")[1:3] for line in table.splitlines()[2:] if line.startswith("|")]
    return [(option.strip(), default.strip()) for option, default in rows]


def literal(text: str):
    value = yaml.safe_load(text)
    if isinstance(value, str):  # YAML 1.1 reads 2e-3 as a string
        try:
            return float(value)
        except ValueError:
            pass
    return value


def test_the_option_table_gives_the_configs_defaults():
    with initialize_config_module(version_base="1.3", config_module="aebench.conf"):
        cfg = OmegaConf.to_container(compose("config"), resolve=True)
    checked = 0
    for option_cell, default_cell in option_rows():
        keys, defaults = TICKED.findall(option_cell), TICKED.findall(default_cell)
        if not defaults or TICKED.sub("", default_cell).strip(" ,"):  # words beside the values ("mlp `[512,256]`, …")
            continue
        if len(defaults) == 1:
            defaults = defaults * len(keys)
        assert len(keys) == len(defaults), option_cell
        for key, default in zip(keys, defaults):
            node = cfg
            for part in key.split("."):
                node = node[part]
            if isinstance(node, dict):  # a config group: its chosen option's name
                if "name" not in node:
                    continue
                node = node["name"]
            assert node == literal(default), f"README says {key} defaults to {default}; the config has {node!r}"
            checked += 1
    assert checked >= 30, checked  # the table was found and read (38 values today)
