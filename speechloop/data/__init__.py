"""Labelled data: the synthetic corpus, manifests, validation and ingestion."""
