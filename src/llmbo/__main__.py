"""``python -m llmbo``: the command line."""

from llmbo.cli import main

raise SystemExit(main())
