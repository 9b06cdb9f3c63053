import sys

from threadcheck._cli import main

sys.exit(main())
