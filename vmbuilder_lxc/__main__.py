"""python3 -m vmbuilder_lxc"""

import sys

from .cli import main

sys.exit(main())
