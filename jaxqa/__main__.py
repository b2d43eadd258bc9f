"""`python -m jaxqa`: the run flags (as run_qa.py; or `train` and them), or a command: `answer`, `evaluate`,
`report`, `compare` (`python -m jaxqa --help` lists them)."""

import sys

from jaxqa.cli import keep_pytorch_out, main

if __name__ == "__main__":
    keep_pytorch_out()
    sys.exit(main(prog="python -m jaxqa"))
