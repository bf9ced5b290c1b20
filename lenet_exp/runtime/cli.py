"""``key=value`` arguments of the commands other than training (eval, predict, resume)."""

from __future__ import annotations

import sys
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException


def key_values(
    argv: list[str], usage: str, keys: set[str], prefix: str | None = None
) -> tuple[dict[str, Any], list[str]]:
    """The arguments named in ``keys`` (typed as YAML values), and those starting with ``prefix``
    (such as ``data.``) as they are. Anything else ends the program with the usage line."""
    passed = [a for a in argv if prefix and a.startswith(prefix)]
    mine = [a for a in argv if a not in passed]
    if any("=" not in a or a.startswith("=") for a in mine):
        sys.exit(usage)
    try:
        args = OmegaConf.to_container(OmegaConf.from_dotlist(mine))
    except OmegaConfBaseException:
        sys.exit(usage)
    unknown = sorted(set(args) - keys)
    if unknown:
        sys.exit(f"error: {unknown[0]} is not an argument of this command; {usage}")
    return args, passed


def names(value: Any) -> list[str]:
    """``trust=a.B,c.D`` (or a YAML list) as a list of names."""
    if value in (None, ""):
        return []
    items = value if isinstance(value, list) else str(value).split(",")
    return [str(item).strip() for item in items if str(item).strip()]
