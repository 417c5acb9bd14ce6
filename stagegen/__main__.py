"""python -m stagegen: the same as the stagegen command."""

import sys

from .cli import main

sys.exit(main())
