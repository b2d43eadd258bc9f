"""`python -m jaxqa`: the run flags (as run_qa.py), or a subcommand: `answer`, `report`, `compare`."""

import sys

from jaxqa.cli import keep_pytorch_out, main

if __name__ == "__main__":
    keep_pytorch_out()
    sys.exit(main())
