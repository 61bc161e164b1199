"""Speed benchmark of one BO iteration; see ``llmbo.benchmarks.speed`` (``--help``)."""

from llmbo.benchmarks.speed import main

if __name__ == "__main__":
    raise SystemExit(main())
