"""What the gateway tells operators about itself: replica state, metrics."""
