"""``python -m interphone.cli``, as the ``interphone`` console script."""

from . import main

if __name__ == "__main__":  # pragma: no cover
    main()
