"""A = B: the A/B method's own noise."""


def swap_a() -> None:
    pass


def swap_b() -> None:
    pass
