from devbox.cli.main import main

raise SystemExit(main())
