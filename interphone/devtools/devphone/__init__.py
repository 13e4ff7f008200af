"""The dev phone: a local stand-in for Twilio (development and tests only), plugged into
the product by :mod:`.plugin`."""
