"""``python -m lavie.cli``: the `lavie` command."""

import sys

from lavie.cli import main

sys.exit(main())
