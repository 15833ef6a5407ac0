"""``python -m mec_eval``."""
import sys

from mec_eval.cli import main

sys.exit(main())
