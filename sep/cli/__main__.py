"""``python -m sep.cli``: the `sep` command."""

import sys

from sep.cli import main

sys.exit(main())
