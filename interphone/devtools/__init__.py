"""Development tooling, apart from the product: the dev phone (a local stand-in for
Twilio), the benches, the load test and the harness they share.

The product (every other package of ``interphone``) never imports this one; it reaches
the dev phone only through the runtime's ``twilio_stand_in``, which the entry points
here pass (:func:`interphone.devtools.devphone.plugin.dev_runtime`).
"""
