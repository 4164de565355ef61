"""Readers and writers: raw files, Delta tables, the audit ledger. Transformations never do I/O."""
