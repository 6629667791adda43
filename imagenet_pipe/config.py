"""YAML presets: package data of :mod:`imagenet_pipe.configs` (``imagenet_pipe/configs/``, also
reachable as ``configs/`` at the top of the repository), found through :mod:`importlib.resources`
in an installed wheel and in an editable install alike.

A preset is named by its file stem (``train-224``) or given as a path to a YAML file; options given
in code or on the command line override it. Presets are resolved once, into the dataclass the
caller builds from them.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .errors import OptionsError

if TYPE_CHECKING:  # importlib.resources.abc is Python 3.11+; annotations only
    from importlib.resources.abc import Traversable


def config_root() -> Traversable:
    return resources.files("imagenet_pipe.configs")


def list_presets(group: str = "") -> list[str]:
    """Names of the shipped presets (file stems), of ``configs/<group>/`` when ``group`` is given."""
    folder = config_root() / group if group else config_root()
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_preset(name: str | Path, group: str = "") -> dict[str, Any]:
    """Load a preset by name (from ``configs/<group>/``) or by path."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.exists():
        text = path.read_text()
    else:
        folder = config_root() / group if group else config_root()
        entry = folder / f"{name}.yaml"
        if not entry.is_file():
            known = ", ".join(list_presets(group)) or "none"
            where = f"configs/{group}" if group else "configs"
            raise OptionsError(f"no preset {name!r} in {where} (known: {known}), and no such YAML file")
        text = entry.read_text()
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise OptionsError(f"preset {name!r} must be a YAML mapping")
    return data
