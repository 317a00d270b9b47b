"""``python -m airhook.cli``: the ``airhook`` command without its console script."""

from __future__ import annotations

from airhook.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
