"""The entry points' Hydra glue: command-line checks, value validation, the trust boundary, run records, resolvers."""
