"""`python -m stream ...` is the `anonstream` command."""

from stream.cli import main

main()
