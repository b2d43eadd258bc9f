"""`python -m jaxqa`: the run flags (as run_qa.py), or a subcommand: `answer`, `report`, `compare`."""

import sys

from jaxqa.cli import main

if __name__ == "__main__":
    sys.exit(main())
