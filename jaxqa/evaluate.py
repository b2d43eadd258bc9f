"""`python -m jaxqa.evaluate DATA PRED`: the scorer's command at the address the official scripts' users
know; the scorer itself is jaxqa.scoring.evaluate, whose functions this face also names."""

import sys

from jaxqa.scoring.evaluate import evaluate_files, main, read_mapping

__all__ = ["evaluate_files", "main", "read_mapping"]

if __name__ == "__main__":
    sys.exit(main())
