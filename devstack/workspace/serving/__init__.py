"""Model Serving: endpoints whose served entities are Unity Catalog model versions."""
