"""``python -m evalsuite`` (and ``torchrun ... -m evalsuite run ...``)."""

import sys

from .cli import main

sys.exit(main())
