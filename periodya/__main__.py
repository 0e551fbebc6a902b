import sys

from periodya.cli import main

sys.exit(main())
