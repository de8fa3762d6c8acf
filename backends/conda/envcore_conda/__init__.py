"""envcore resolver driving a conda-CLI-compatible solver (conda create --dry-run --json)"""
