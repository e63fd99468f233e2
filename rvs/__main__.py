from rvs.cli import main

raise SystemExit(main())
