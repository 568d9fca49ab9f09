"""Training: the loop (``loop.py``), its data (``data.py``), checkpoints, DDP setup and preemption handling."""
