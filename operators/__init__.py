"""Ray Data operators and the formats, schema and media helpers they share."""
