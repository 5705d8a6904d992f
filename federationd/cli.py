"""The ``federationd`` command line.

Each sub-command lives in its own module with its own ``main(argv) -> int``; this module
only dispatches, imports the module lazily (so ``federationd events`` never pays for
the emulator's imports) and turns an unexpected error into a one-line message and a
non-zero exit code instead of a traceback.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

#: sub-command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("federationd.daemon", "run the daemon against a master cluster"),
    "events": ("federationd.inspect", "print events from a log (optionally --follow)"),
    "replay": ("federationd.inspect", "replay a log and print the desired objects per cluster"),
    "state": ("federationd.inspect", "replay a log and print the projection state"),
    "explain": ("federationd.inspect", "which events produced an object and which writes applied it"),
    "diff": ("federationd.inspect", "what changed in the desired state between two sequence numbers"),
    "analyze": ("federationd.analyze", "check a multi-cluster mesh (live clusters or --log) against Istio's facts"),
    "sim": ("federationd.sim.cli", "serve a simulated fleet of Kubernetes API servers"),
    "demo": ("federationd.demo", "start a simulated fleet and the daemon, and show it converging"),
}


def _usage() -> str:
    width = max(len(c) for c in COMMANDS)
    lines = ["usage: federationd COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run 'federationd COMMAND --help' for a command's options."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if args else 2
    if args[0] in ("--version", "version"):
        from federationd import __version__

        print(f"federationd {__version__}")
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"federationd: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    entry = module.main
    try:
        return int(entry([name, *rest]) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
