"""Placeholder until this API module lands."""


def register(router, ctx):
    pass
