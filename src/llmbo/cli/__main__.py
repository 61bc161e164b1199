import sys

from llmbo.cli import main

sys.exit(main())
