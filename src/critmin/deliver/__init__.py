"""Delivery of supported and allied output to buyers, and supplier-buyer matching (docs/deliver.md)."""
