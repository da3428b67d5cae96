"""Sans-IO packet formats: raw views over bytes plus validated immutable reprs (DESIGN rule 8)."""
