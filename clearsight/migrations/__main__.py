"""``python -m clearsight.migrations``: show or migrate the catalog's schema revision."""

from clearsight.migrations import main

raise SystemExit(main())
