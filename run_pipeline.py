#!/usr/bin/env python3
"""Entry point of the analytics notebook pipeline: hands over to ``eventpipe.cli``."""

from eventpipe.cli.exiting import run

if __name__ == "__main__":
    run()
