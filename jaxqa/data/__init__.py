"""Data in: SQuAD-format files checked at load (examples), tokenised into windows (features, cached),
planned into length-bucketed batches (batching); eval overlap; Hub datasets (hub)."""
