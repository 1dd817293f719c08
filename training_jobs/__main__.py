import sys

from training_jobs.cli import main

sys.exit(main())
