import sys

from jaxqa.cli import main

sys.exit(main())
