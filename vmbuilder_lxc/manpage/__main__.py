"""`python3 -m vmbuilder_lxc.manpage`: write or check the man pages (see the package's docstring)."""

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
