"""Log settings of a command: quiet by default (warnings and what the command says), everything with -v."""

from __future__ import annotations

import logging


def configure_logging(verbose: bool) -> None:
    """Quiet by default: warnings and the URL."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # pymodbus logs every failed connect; our adapter reports device failures once, as a state
    logging.getLogger("pymodbus").setLevel(logging.DEBUG if verbose else logging.CRITICAL)
