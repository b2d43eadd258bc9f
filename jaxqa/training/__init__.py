"""The training run: set-up (run_setup, train_state), pure jitted steps (steps), the loop (trainer), and its
policies as objects of their own: evaluations (evaluator), the model saved and pushed (export), checkpoints,
model selection, preemption, the periodic clock, compiled programs, the run log and throughput."""
