import sys

from harness.ladder.cli import main

sys.exit(main())
