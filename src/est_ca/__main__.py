from est_ca.cli import main

raise SystemExit(main())
