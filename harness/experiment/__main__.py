import sys

from harness.experiment.cli import main

sys.exit(main())
