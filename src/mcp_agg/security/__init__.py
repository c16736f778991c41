"""What guards the HTTP front: DNS-rebinding protection (and, later, auth and limits)."""
