"""The benches behind ``interphone bench``: one module per command (``queue``, ``ivr``,
``feed``, ``speech``, ``simulate``; ``load`` is :mod:`interphone.devtools.loadtest`)."""
