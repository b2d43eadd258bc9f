"""When jaxqa was launched: the process's first jaxqa import (the package imports this module first), from
which a run's goodput counts. A module of its own on the ground floor, so the training layer reads it
without importing the package's face."""

import time

LAUNCHED = time.perf_counter()
