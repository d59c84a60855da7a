import sys

from deepliver.cli import main

sys.exit(main())
