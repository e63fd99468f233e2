"""`python -m rvs COMMAND`: see rvs.cli."""

from rvs.cli import main

raise SystemExit(main())
