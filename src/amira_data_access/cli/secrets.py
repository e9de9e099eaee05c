"""``secrets rotate|new-key``: the keys that seal ``data_type="secret"`` values.

The keyring comes from the environment (``AMIRA_CONFIG_SECRET_KEYS`` or
``AMIRA_CONFIG_SECRET_KEYS_FILE``, ``AMIRA_CONFIG_SECRET_KEY_ID``); no key is
ever printed but by ``new-key``, which makes one for you to store.
"""

from __future__ import annotations

from .context import ALL_OUTPUTS, Context, Item, Outcome, Subcommands, actor, add_command
from .values import UsageError

__all__ = ["add_commands"]


def add_commands(commands: Subcommands) -> None:
    """Register secrets."""
    secrets = add_command(
        commands,
        "secrets",
        summary="secrets' keys: rotate (re-wrap every secret under a key id), new-key",
        examples=[
            "amira-config secrets new-key k2 >> /run/secrets/amira-keys",
            "amira-config secrets rotate --to k2 --dry-run",
            "amira-config secrets rotate --to k2 --by ops-anna",
        ],
        run=cmd_secrets,
        outputs=ALL_OUTPUTS,
        details=(
            "rotate re-encrypts each secret's data key with the key of --to (the\n"
            "ciphertext stays); the keyring must hold the old and the new key ids.\n"
            "new-key prints KEY_ID:BASE64 for AMIRA_CONFIG_SECRET_KEYS(_FILE)."
        ),
    )
    secrets.add_argument("action", choices=("rotate", "new-key"), help="what to do")
    secrets.add_argument("key_id", nargs="?", default="k1", help="new-key: the id (k1)")
    secrets.add_argument("--to", metavar="KEY_ID", help="rotate: the key id to wrap with")
    secrets.add_argument("--prefix", default="", metavar="P", help="rotate: only keys under P")
    secrets.add_argument(
        "--dry-run", action="store_true", help="rotate: list the keys, change nothing"
    )
    secrets.add_argument("--by", metavar="WHO", help="who rotates (default: as for set)")


def cmd_secrets(ctx: Context) -> Outcome:
    """``secrets rotate --to KEY_ID`` or ``secrets new-key [KEY_ID]``."""
    from ..secrets import Keyring

    if ctx.args.action == "new-key":
        line = f"{ctx.args.key_id}:{Keyring.generate_key()}"
        Keyring.parse(line)  # the id must be one a keyring takes
        return Outcome({"key": line}, line, items=[Item("key", line, "str")])
    return _rotate(ctx)


def _rotate(ctx: Context) -> Outcome:
    from ..secrets import rotate_secrets

    keyring = ctx.keyring()
    if keyring is None:
        raise UsageError(
            "secrets rotate needs the keyring: set AMIRA_CONFIG_SECRET_KEYS or "
            "AMIRA_CONFIG_SECRET_KEYS_FILE (with the old and the new key ids)"
        )
    target = ctx.args.to or keyring.active
    keys = rotate_secrets(
        ctx.dal(),
        keyring,
        to=target,
        updated_by=actor(ctx),
        prefix=ctx.args.prefix,
        dry_run=ctx.args.dry_run,
    )
    verb = "would re-wrap" if ctx.args.dry_run else "re-wrapped"
    text = f"{verb} {len(keys)} secret(s) with key id {target}"
    if keys:
        text += ":\n" + "\n".join(f"  {key}" for key in keys)
    document = {"to": target, "dry_run": ctx.args.dry_run, "keys": keys}
    return Outcome(document, text, items=[Item(key, key, "str") for key in keys])
