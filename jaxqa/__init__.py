"""jaxqa: extractive question answering (SQuAD-style) fine-tuning in JAX/Flax.

Modules follow the data path: data -> features -> batching -> steps (jit) -> decode -> metrics;
models/ and weights hold the encoder and its checkpoints; train_state the state and optimizer;
trainer the loop; cli the `run_qa.py` flags; evaluate the scorer CLI; answer one-shot answers.
"""

import time as _time

__version__ = "0.1.0"
LAUNCHED = _time.perf_counter()  # ~process start: the first jaxqa import; goodput counts from here
