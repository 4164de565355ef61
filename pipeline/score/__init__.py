"""The score stage (see `runner`) and its monitoring (`monitor`)."""
