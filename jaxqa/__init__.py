"""jaxqa: extractive question answering in JAX/Flax."""
