"""`python -m server.registry`: the registry sync process the Gunicorn master starts."""

import sys

from server.registry.process import main

sys.exit(main())
