"""The gateway as an OAuth client of a backend: where its tokens are kept.

In `backend/`, not `security/`: these are credentials the gateway presents to a backend
it connects to (its client side), while `security/` guards the gateway's own front.
"""
