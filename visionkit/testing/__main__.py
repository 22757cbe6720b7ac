"""``python -m visionkit.testing``: a FakeGemini from the shell (see :mod:`visionkit.testing.fake_cli`)."""

import sys

from .fake_cli import main

if __name__ == "__main__":
    sys.exit(main())
