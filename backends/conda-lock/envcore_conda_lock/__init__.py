"""envcore mixed resolver on conda-lock."""
