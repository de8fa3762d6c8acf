"""envcore resolver driving micromamba"""
