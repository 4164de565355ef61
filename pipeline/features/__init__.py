"""Features: bronze -> feature table (pure transforms in `transforms`, I/O in `runner`)."""
