#!/usr/bin/env python
"""Fine-tune and evaluate an extractive QA model in JAX. `python run_qa.py --help` lists the flags;
with no arguments it fine-tunes the packaged MiniLM on the bundled SQuAD sample."""

import sys

from jaxqa.cli import keep_pytorch_out, main

if __name__ == "__main__":
    keep_pytorch_out()
    sys.exit(main())
