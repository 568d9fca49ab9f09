from infbrush.cli import main

raise SystemExit(main())
