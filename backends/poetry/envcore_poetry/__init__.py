"""envcore PyPI resolver on poetry lock"""
