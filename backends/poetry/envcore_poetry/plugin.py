"""Hook implementations only (work in progress)."""
