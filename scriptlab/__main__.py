import sys

from scriptlab.cli import main

sys.exit(main())
