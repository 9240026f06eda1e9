"""The crash-safe batch runner: a JSON Lines file of prompts through a chain, exactly once.

::

    from llmchain.batch import run_batch

    summary = await run_batch("in.jsonl", "out.jsonl", chain, concurrency=16)

See docs/batch.md for the formats; ``_io`` reads input lines, ``_log`` owns the output file,
``_progress`` draws the progress line and ``_run`` runs the calls.
"""

from ._io import BatchError
from ._run import run_batch
from ._summary import BatchSummary

__all__ = ["BatchError", "BatchSummary", "run_batch"]
