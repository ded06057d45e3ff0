#!/usr/bin/env python3
"""Benchmark: the whole pipeline end to end and per stage, beside raw limits measured in the same run.

    .venv/bin/python bench/run.py --events 1000000 [--per-page 1000] [--repeat 1] [--profile]

The code lives in ``bench/eventpipe_bench/`` (one module per part; bench/README.md says what each figure
means). This file is the entry, for the command line and for the benchmark's own child processes:
``run.py _direct`` (the stages called directly, no notebooks) and ``run.py _summary`` (the schema and the
status timings of ``--existing-rows``), which run with the measured code's lib/ first on the import path.
"""

import sys

from eventpipe_bench.cli import main
from eventpipe_bench.existing_rows import summary_child
from eventpipe_bench.pipeline import direct_child

CHILDREN = {"_direct": direct_child, "_summary": summary_child}

if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in CHILDREN:
        sys.exit(CHILDREN[sys.argv[1]](sys.argv[2:]))
    sys.exit(main())
