"""The train stage (see `runner`)."""
