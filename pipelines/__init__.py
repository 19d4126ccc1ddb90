"""A TFX-shaped AutoRec pipeline: small components, content fingerprints, cached local runs."""
