"""The ``llmesr`` command: train, embed, evaluate, recommend, compare, report, export, serve,
experiment, tune, prepare, data stats.

Every user-facing error (bad data, bad config, wrong checkpoint) is one line on stderr and exit
code 2; nothing is written for a run whose inputs are rejected. The parser is in :mod:`.parser`,
the commands (parse arguments, call one library function, print) in :mod:`.commands`.
"""

from __future__ import annotations

import logging
import sys

from llmesr.checkpoint import CheckpointError
from llmesr.cli import commands
from llmesr.cli.parser import build_parser
from llmesr.data.formats import DataFormatError
from llmesr.errors import ConfigError
from llmesr.semantic.encoders import EncoderError
from llmesr.serving.bundle import BundleError

__all__ = ["USER_ERRORS", "build_parser", "main"]

# Errors that mean "bad input", raised on purpose with a message naming the file, line or key.
# Anything else (a KeyError, TypeError, ...) is a bug and keeps its traceback and exit code 1.
USER_ERRORS = (
    DataFormatError,
    ConfigError,
    CheckpointError,
    EncoderError,
    BundleError,
    FileNotFoundError,
)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not logging.getLogger("llmesr").handlers:  # library warnings, one line each
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("llmesr: %(levelname)s: %(message)s"))
        logging.getLogger("llmesr").addHandler(handler)
    command = {
        "train": commands.cmd_train,
        "embed": commands.cmd_embed,
        "evaluate": commands.cmd_evaluate,
        "recommend": commands.cmd_recommend,
        "compare": commands.cmd_compare,
        "report": commands.cmd_report,
        "export": commands.cmd_export,
        "serve": commands.cmd_serve,
        "experiment": commands.cmd_experiment,
        "tune": commands.cmd_tune,
        "prepare": commands.cmd_prepare,
        "data": commands.cmd_data_stats,  # "stats" is the only data subcommand so far
    }[args.command]
    try:
        return command(args)
    except USER_ERRORS as err:
        # One line whatever the message holds (library messages may quote input over several lines).
        message = " ".join(str(err).split())
        print(f"llmesr {args.command}: error: {message}", file=sys.stderr)
        return 2
