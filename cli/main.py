"""The ``stash`` command: one binary, one subcommand per role (like Stash's own), each role's
commands added by its own module: ``cli.operator``, ``cli.webhook``, ``cli.agent`` (the programs
in users' pods), ``cli.repository``; the dev cluster's (``stash dev-cluster``, ``stash demo``)
by the ``stash.commands`` entry point of the development package, where it is installed."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from cli import agent, logs, operator, repository, webhook

PLUGINS = "stash.commands"


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stash",
        description="A Stash-compatible backup operator: one command, one subcommand per role.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for role in (operator, webhook, agent, repository):
        role.add_commands(sub)
    if _wants_plugins(sub, sys.argv[1:] if argv is None else argv):
        from importlib.metadata import entry_points

        for plugin in entry_points(group=PLUGINS):
            plugin.load()(sub)
    return parser


def _wants_plugins(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], argv: Sequence[str]
) -> bool:
    """Only a command the product lacks, or help, looks for plugins: reading every installed
    distribution's entry points costs a sidecar's start time it need not pay."""
    words = [a for a in argv if not a.startswith("-")]
    return not words or words[0] not in sub.choices or "-h" in argv[:1] or "--help" in argv[:1]


def _expected_errors() -> tuple[type[Exception], ...]:
    """What a command may fail with in the normal course (said in one line): bad input, the API
    server's refusals. Only of what the command loaded (the dev cluster's errors are
    RuntimeErrors)."""
    kube_errors = sys.modules.get("kube.errors")
    found: list[type[Exception]] = [ValueError, RuntimeError]
    if kube_errors is not None:
        found.append(kube_errors.KubeError)
    return tuple(found)


# Services: a crash prints its traceback into their log (interactive commands: one line).
LONG_RUNNING = frozenset({"operator", "webhook", "run-backup", "restore-init"})


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        logs.configure(getattr(args, "log_format", None))
    except ValueError as exc:
        parser.error(str(exc))
    if args.command == "certs" and args.action == "local" and not args.dir:
        parser.error("certs local needs --dir")
    try:
        code: int = args.func(args)
    except _expected_errors() as exc:
        print(f"stash {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug of ours
        if args.command in LONG_RUNNING:  # a crash of a service: its traceback, in its log
            logging.getLogger("stash").exception("stash %s crashed", args.command)
            return 70
        # An interactive command: one line here, the traceback at debug level.
        logging.getLogger("stash").debug("internal error", exc_info=True)
        print(
            f"stash {args.command}: internal error ({type(exc).__name__}: {exc}); "
            "STASH_LOG_LEVEL=DEBUG shows where",
            file=sys.stderr,
        )
        return 70
    return code


if __name__ == "__main__":
    sys.exit(main())
