"""`python -m server.cli`: the same command as `ocr-server`."""

import sys

from server.cli import main

sys.exit(main())
