"""`python -m desktop` / `sfumato`: the app, or `generate ...` for the CLI."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["generate"]:
        from desktop.cli import main as cli_main

        return cli_main(argv[1:])
    from desktop.app import main as app_main

    return app_main(argv)


if __name__ == "__main__":
    sys.exit(main())
