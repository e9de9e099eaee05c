"""What live settings handles (:mod:`.live_async`, :mod:`.live`) share, sync or async: the
model's input from the keys under a prefix, the frozen model, the problems report, and
:func:`validate_or_exit` for a service's start-up."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar

from .errors import InvalidConfigurationError

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = [
    "EXIT_CONFIG",
    "HasProblems",
    "SettingsValidationError",
    "frozen_model",
    "problems_of",
    "settings_input",
    "validate_or_exit",
]

EXIT_CONFIG: Final = 78  # EX_CONFIG (sysexits.h): a configuration error


class HasProblems(Protocol):
    """A live settings handle, as :func:`validate_or_exit` sees it."""

    problems: list[str]


M = TypeVar("M", bound="BaseModel")


class SettingsValidationError(InvalidConfigurationError):
    """Settings under a prefix do not validate against their model.

    ``problems`` names each key: ``"amira.chat.max_turns: missing"``, never a value.
    """

    def __init__(self, message: str, problems: list[str]) -> None:
        super().__init__(message)
        self.problems = problems


def settings_input(prefix: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """The model's input from the values under ``prefix``: the rest of each key a field,
    a dotted rest a nested field (merged into a json value of the parent key, if any)."""
    data: dict[str, Any] = {}
    # Shorter keys first: 'limits' (a json value) before 'limits.tokens' refines it.
    for key in sorted(values, key=lambda k: (k.count("."), k)):
        parts = key[len(prefix) :].split(".")
        node = data
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            else:
                child = dict(child)  # never change the value read
                node[part] = child
            node = child
        node[parts[-1]] = values[key]
    return data


def frozen_model(model: type[M]) -> type[M]:
    """``model`` itself if frozen, else a frozen subclass of it (same name, same fields)."""
    from pydantic import ConfigDict

    if model.model_config.get("frozen"):
        return model
    config = ConfigDict(**{**model.model_config, "frozen": True})
    namespace = {"model_config": config, "__module__": model.__module__}
    frozen: type[M] = type(model.__name__, (model,), namespace)
    # The fields' annotations are resolved where the model was defined, not here: give the
    # subclass the namespace pydantic kept of that place (a model defined in a function,
    # or in code run with exec, would else not find its nested models).
    parent = getattr(model, "__pydantic_parent_namespace__", None)
    if not frozen.__pydantic_complete__ and parent:
        frozen.model_rebuild(_types_namespace=dict(parent))
    return frozen


def problems_of(prefix: str, error: Any) -> list[str]:
    """One line per key from a pydantic ValidationError (the values left out)."""
    problems = []
    for item in error.errors(include_url=False, include_input=False):
        where = prefix + ".".join(str(part) for part in item["loc"])
        problems.append(f"{where}: {'missing' if item['type'] == 'missing' else item['msg']}")
    return problems


def validate_or_exit(*settings: HasProblems, exit_code: int = EXIT_CONFIG) -> None:
    """At start-up: if any of ``settings`` did not validate, print one report naming every
    missing or invalid key on stderr and exit (``SystemExit(78)``, EX_CONFIG)."""
    import sys

    problems = [problem for handle in settings for problem in handle.problems]
    if not problems:
        return
    lines = [f"configuration invalid: {len(problems)} problem(s)"]
    lines += [f"  {problem}" for problem in problems]
    print("\n".join(lines), file=sys.stderr)
    raise SystemExit(exit_code)
