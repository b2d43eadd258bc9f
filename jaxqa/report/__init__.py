"""What a run shows: the evaluation report page (page), run comparison (compare), training_curves.png (plots)."""
