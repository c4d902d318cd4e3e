"""Allow `python -m imgfinder`."""

from imgfinder.cli import main

raise SystemExit(main())
