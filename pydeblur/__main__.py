import sys

from pydeblur.cli import main

sys.exit(main())
