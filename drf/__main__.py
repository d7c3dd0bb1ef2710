"""``python -m drf`` (and ``accelerate launch -m drf``) runs the CLI."""

import sys

from drf.cli import main

sys.exit(main())
