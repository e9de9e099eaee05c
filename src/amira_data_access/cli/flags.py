"""``flag``: create, enable, disable, roll out and evaluate feature flags (``data_type="flag"``).

Every change is a compare-and-set on the version read (``--expect-version`` of the
write), so two people rolling out the same flag cannot overwrite each other
silently: the second gets exit code 3 and tries again on the new version.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Final

from .context import ALL_OUTPUTS, Context, Item, Outcome, Subcommands, actor, add_command
from .output import to_json
from .values import NotFoundError, UsageError

if TYPE_CHECKING:
    from ..entries import ConfigEntry

__all__ = ["ACTIONS", "add_commands", "rollout_weights"]

ACTIONS: Final = ("create", "enable", "disable", "rollout", "evaluate", "show")
_PERCENT: Final = re.compile(r"^(100(?:\.0+)?|\d{1,2}(?:\.\d{1,4})?)%?$")


def add_commands(commands: Subcommands) -> None:
    """Register flag."""
    flag = add_command(
        commands,
        "flag",
        summary="feature flags: create, enable, disable, rollout, evaluate, show",
        examples=[
            "amira-config flag create checkout.new-flow",
            "amira-config flag create chat.tone --file tone-flag.json",
            "amira-config flag rollout checkout.new-flow 25%",
            "amira-config flag enable checkout.new-flow",
            'amira-config flag evaluate checkout.new-flow --context \'{"targetingKey": "u1"}\'',
            "amira-config flag disable checkout.new-flow --reason 'incident 7'",
        ],
        run=cmd_flag,
        outputs=ALL_OUTPUTS,
        details=(
            "create: a boolean flag (variants on/off, default off, disabled until enabled), "
            "or the flag document of --file. rollout PERCENT: that share of targeting keys "
            "gets --variant (default: the variant whose value is true), the others the "
            "default variant. evaluate: the value, variant, reason and version for --context."
        ),
    )
    flag.add_argument("action", choices=ACTIONS, metavar="ACTION", help=", ".join(ACTIONS))
    flag.add_argument("key", metavar="FLAG")
    flag.add_argument("percent", nargs="?", metavar="PERCENT", help="rollout: 25%%, 12.5%%, 100%%")
    flag.add_argument("--file", metavar="PATH", help="create: the flag document (JSON)")
    flag.add_argument("--variant", metavar="NAME", help="rollout: the variant rolled out")
    flag.add_argument(
        "--context", metavar="JSON", help='evaluate: {"targetingKey": "u1", "plan": "pro"}'
    )
    flag.add_argument("--description", help="create: what the flag is for")
    flag.add_argument("--by", metavar="WHO", help="who makes the change")
    flag.add_argument("--reason", help="why (kept in the history)")


def rollout_weights(percent: str, variant: str, rest: str) -> list[dict[str, Any]]:
    """``25%`` -> ``variant`` weighs 25 of 100, ``rest`` 75 (decimals scale the total)."""
    match = _PERCENT.match(percent.strip())
    if match is None:
        raise UsageError(f"rollout takes a percentage from 0% to 100%, not {percent!r}")
    number = match.group(1)
    decimals = len(number.partition(".")[2])
    total = 100 * 10**decimals
    share = round(float(number) * 10**decimals)
    if variant == rest:
        return [{"variant": variant, "weight": total}]
    return [{"variant": variant, "weight": share}, {"variant": rest, "weight": total - share}]


def _stored_flag(ctx: Context, key: str) -> ConfigEntry:
    entry = ctx.dal().get_entry(key)
    if entry is None:
        raise NotFoundError(f"no flag {key!r} (create it: amira-config flag create {key})")
    if entry.data_type != "flag":
        raise UsageError(f"{key!r} is a {entry.data_type} key, not a flag")
    return entry


def _write(ctx: Context, key: str, document: Any, expected_version: int, what: str) -> Outcome:
    entry = ctx.dal().set(
        key,
        document,
        data_type="flag",
        description=ctx.args.description,
        updated_by=actor(ctx),
        reason=ctx.args.reason,
        expected_version=expected_version,
    )
    text = ctx.style.green(f"{what} {entry.key} (version {entry.version})")
    return Outcome(
        {"key": entry.key, "version": entry.version, "value": entry.value},
        text,
        items=[Item(entry.key, entry.value, "json")],
        confirmation=True,
    )


def _load_json(text: str, what: str) -> Any:
    import json

    try:
        return json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{what} is not JSON: {exc}") from None


def cmd_flag(ctx: Context) -> Outcome:
    """``flag ACTION FLAG``: see :func:`add_commands`."""
    args = ctx.args
    action: str = args.action
    key: str = args.key
    if (args.percent is not None) != (action == "rollout"):
        raise UsageError("a PERCENT goes with flag rollout (and flag rollout needs one)")
    if args.context is not None and action != "evaluate":
        raise UsageError("--context goes with flag evaluate")
    if args.file is not None and action != "create":
        raise UsageError("--file goes with flag create")
    if action == "create":
        return _create(ctx, key)
    if action == "evaluate":
        return _evaluate(ctx, key)
    entry = _stored_flag(ctx, key)
    if action == "show":
        return Outcome(
            {"key": key, "version": entry.version, "value": entry.value},
            f"{key} (version {entry.version})\n{to_json(entry.value)}",
            items=[Item(key, entry.value, "json")],
        )
    document = dict(entry.value)
    if action in ("enable", "disable"):
        document["enabled"] = action == "enable"
        return _write(ctx, key, document, entry.version, f"{action}d")
    variants: dict[str, Any] = document["variants"]
    variant = args.variant
    if variant is None:
        on = [name for name, value in variants.items() if value is True]
        if len(on) != 1:
            raise UsageError(f"{key!r} has no single true variant: name one with --variant")
        variant = on[0]
    if variant not in variants:
        raise UsageError(f"{key!r} has no variant {variant!r} (it has {', '.join(variants)})")
    document["rollout"] = rollout_weights(args.percent, variant, document["defaultVariant"])
    return _write(ctx, key, document, entry.version, f"rolled out {args.percent} of")


def _create(ctx: Context, key: str) -> Outcome:
    if ctx.args.file is not None:
        from .values import strip_final_newline

        try:
            with open(ctx.args.file, encoding="utf-8") as source:
                text = strip_final_newline(source.read())
        except OSError as exc:
            raise UsageError(f"cannot read {ctx.args.file}: {exc.strerror}") from None
        document = _load_json(text, ctx.args.file)
    else:
        document = {
            "enabled": False,
            "variants": {"on": True, "off": False},
            "defaultVariant": "off",
        }
    return _write(ctx, key, document, 0, "created flag")


def _evaluate(ctx: Context, key: str) -> Outcome:
    import json

    context = {} if ctx.args.context is None else _load_json(ctx.args.context, "--context")
    if not isinstance(context, dict):
        raise UsageError('--context is a JSON object: {"targetingKey": "u1", ...}')
    result = ctx.dal().evaluate(key, context)
    document = {
        "key": result.flag_key,
        "value": result.value,
        "variant": result.variant,
        "reason": result.reason.value,
        "version": result.version,
        "error_code": None if result.error_code is None else result.error_code.value,
        "error_message": result.error_message,
    }
    shown = json.dumps(result.value, ensure_ascii=False)
    text = f"{key} = {shown} (variant {result.variant}, {result.reason.value}"
    text += f", version {result.version})" if result.version is not None else ")"
    if result.error_message:
        text += f"\n{result.error_message}"
    outcome = Outcome(document, text, items=[Item(key, result.value, "json")])
    if result.error_code is not None and result.error_code.value == "FLAG_NOT_FOUND":
        outcome.exit_code = 1
        outcome.error = f"no flag {key!r}"
    return outcome
