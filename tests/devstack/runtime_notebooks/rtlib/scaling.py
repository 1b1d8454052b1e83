"""A plain module next to the notebooks: a workspace file (WORKSPACE source) or a repo file (GIT)."""


def scale(values, factor):
    return [v * factor for v in values]
