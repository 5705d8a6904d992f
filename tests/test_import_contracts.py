"""The import contracts name every module they are about: a module added later is not
silently outside "the daemon never knows whether it talks to the emulator", nor outside
the pipeline's layers (``lint-imports``, run by ``make test``, checks only what is named)."""

from __future__ import annotations

import pkgutil
import tomllib
from pathlib import Path
from typing import Any

import federationd

ROOT = Path(__file__).resolve().parents[1]
#: What may know the emulator: the emulator itself, the demo (which runs it) and the
#: command line (whose ``sim`` and ``demo`` commands start it).
KNOWS_THE_EMULATOR = {"federationd.sim", "federationd.demo", "federationd.cli"}


def _contract(name_starts: str) -> dict[str, Any]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts = config["tool"]["importlinter"]["contracts"]
    [found] = [c for c in contracts if c["name"].startswith(name_starts)]
    return found


def _top_level() -> set[str]:
    return {f"federationd.{m.name}" for m in pkgutil.iter_modules(federationd.__path__)}


def test_the_emulator_contract_covers_every_module_of_the_daemon() -> None:
    contract = _contract("The daemon never knows")
    covered = set(contract["source_modules"])
    assert "events" in covered
    assert _top_level() - KNOWS_THE_EMULATOR - covered == set()
    assert set(contract["forbidden_modules"]) == {"federationd.sim", "federationd.demo"}


def test_the_layers_contract_places_every_module_but_the_emulator() -> None:
    layers = _contract("The pipeline's layers")["layers"]
    placed = {m.strip() for layer in layers for m in layer.split("|")}
    assert layers[-1] == "events" and layers[0] == "federationd.cli"
    assert _top_level() - {"federationd.sim"} - placed == set()
