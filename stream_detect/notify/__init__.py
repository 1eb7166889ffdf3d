"""Notifications: events sent to other systems (MQTT brokers, webhooks)."""
