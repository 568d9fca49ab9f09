"""What several stages share at run time, apart from the stages themselves.

``checkpoint`` (atomic checkpoint files, RNG state, newest-intact loading), ``distributed`` (DDP set-up from
torchrun / SLURM variables), ``preemption`` (SIGTERM/SIGUSR1 → checkpoint, requeue, exit 75), ``jobs`` (the
per-input job runner, one-line input errors and the ``failures.tsv`` file), ``device`` (``auto`` → cuda or
cpu) and ``chunks`` (the chunks of points of a chunked forward, shared by the sampler in ``diffusion/`` and the
networks in ``models/``). Stages (``data``, ``ssl``, ``train``, ``embed``, ``evaluate``, ``sample``) import from
here, never from each other's internals.
"""
