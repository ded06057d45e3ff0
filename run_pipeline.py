#!/usr/bin/env python3
"""Entry point of the analytics notebook pipeline: hands over to ``eventpipe.cli``."""

import sys

from eventpipe.cli import main

if __name__ == "__main__":
    sys.exit(main())
