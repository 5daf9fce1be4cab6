"""Dynamics 365 F&O side: msal auth, OData reader and filter builder, metadata discovery, dimension
formats, journal writer (see ``client.connect``)."""
