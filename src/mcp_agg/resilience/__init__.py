"""The pieces of the call path that keep the gateway up when backends are not."""
