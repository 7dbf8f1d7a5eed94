"""Ray Data operators and the readers, schema and media helpers they share."""
