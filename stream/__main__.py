"""`python -m stream ...` is the `anonstream` command, with the command's exit status."""

import sys

from stream.cli import main

sys.exit(main())
