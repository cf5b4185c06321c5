"""The Hydra glue of the entry points: command-line checks, value validation, the trust boundary, run records, resolvers."""
