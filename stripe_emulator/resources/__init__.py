"""Resource modules. Every module in this package is imported at startup (server.load_resources)
and registers its routes, object types and triggers; add a file, no list to edit."""
