from diffsearch.cli.main import main

raise SystemExit(main())
