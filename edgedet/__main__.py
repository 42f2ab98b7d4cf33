import sys

from edgedet.cli.main import main

sys.exit(main())
