"""The webhook-silence sensor and the tip fill it launches."""
