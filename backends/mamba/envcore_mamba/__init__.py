"""envcore resolver driving mamba (1.x and 2.x)"""
