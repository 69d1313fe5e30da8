from sgfast.cli import main

raise SystemExit(main())
