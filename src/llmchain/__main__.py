"""``python -m llmchain`` runs the CLI (same as the ``llmchain`` console script)."""

import sys

from .cli import main

sys.exit(main())
