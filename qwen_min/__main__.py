import sys

from qwen_min.cli import main

sys.exit(main())
