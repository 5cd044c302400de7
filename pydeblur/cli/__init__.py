"""The `pydeblur` command. Each subcommand lives in its own module of this package, which defines
`add_parser(subparsers)`; the parser it adds sets `func` to the function that runs it."""

import argparse
import importlib
import sys

SUBCOMMANDS: list[str] = [
    "psf_cmd",
    "blur_cmd",
    "deblur_cmd",
    "demo_cmd",
    "ui_cmd",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pydeblur", description="Non-blind deblurring of photos whose blur kernel is known."
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"pydeblur.cli.{name}").add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        print("pydeblur: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if args.debug:
            raise
        print(f"pydeblur {args.command}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
