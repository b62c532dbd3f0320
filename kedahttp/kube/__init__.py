"""Kubernetes: the client adapter, the app model, the admin API and its OpenAPI."""
