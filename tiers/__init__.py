"""Tiers (联网上报): the upload protocol between tankwatch instances and to upper platforms (docs/)."""
