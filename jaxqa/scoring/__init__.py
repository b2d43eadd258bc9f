"""Answers out and scored: device batches through a forward (inference), exact best-span decoding
(decode), the official metrics (metrics), a split's scores and files (evaluation), one-shot answers
(answer), the scorer CLI (evaluate)."""
