"""envcore-rattler: solve and install conda environments with py-rattler."""
