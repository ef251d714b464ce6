"""``python -m failscope`` runs the command line."""

import sys

from failscope.cli import main

sys.exit(main())
