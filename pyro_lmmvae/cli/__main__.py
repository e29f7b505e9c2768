"""``python -m pyro_lmmvae.cli``: the ``pyro-lmmvae`` command."""

import sys

from pyro_lmmvae.cli import main

sys.exit(main())
