"""Importers: one module per raw source, each turning raw files into tidy atlas tables."""
