"""Portals: the installation store (tokens, status), their settings, PBX keys and mappings."""
