"""What guards the gateway: DNS-rebinding protection, auth, roles, limits, tool pinning,
secret redaction."""
