from sessionpush.cli import main

raise SystemExit(main())
