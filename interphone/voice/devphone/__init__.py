"""The dev phone: a local stand-in for Twilio (development and tests only)."""
