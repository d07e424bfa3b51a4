"""`python -m live.cli` is `netbend`."""
import sys

from live.cli import main

sys.exit(main())
