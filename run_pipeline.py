#!/usr/bin/env python3
"""Entry point of the analytics notebook pipeline: hands over to ``eventpipe.cli``."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "lib"))  # works without `pip install -e .` too

from eventpipe.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
