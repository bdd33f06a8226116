"""`python -m autoflash.cli`: the same as the `autoflash` command."""
import sys

from autoflash.cli import main

sys.exit(main())
