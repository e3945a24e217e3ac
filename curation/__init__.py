"""Scores → pairs: selection strategies, ties and margins, normalization, per-pair weights; import of
existing preference datasets; export to TRL / HF formats. Loads no model."""
