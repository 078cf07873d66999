from s3rpc.cli import main

raise SystemExit(main())
