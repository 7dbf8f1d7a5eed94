"""Dataset formats: reading pools into the sample row, and writing rows back out."""
