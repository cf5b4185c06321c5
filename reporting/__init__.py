"""Reading and writing what runs leave behind: manifests, weight cards, tables."""
