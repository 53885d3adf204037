"""Objectives of the ``diffsearch.search`` tests, importable by worker processes by name."""


def quadratic(params, report):
    """(x - 0.3)^2 + a penalty per optimizer, reported at three steps as a training curve would be."""
    value = (params["x"] - 0.3) ** 2 + (0.0 if params.get("optimizer", "adam") == "adam" else 0.1)
    for step in (1, 2, 3):
        report(step, value * (1 + 1 / step))
    return value


def rosenbrock(params, report):
    x, y = params["x"], params["y"]
    return (1 - x) ** 2 + 100 * (y - x * x) ** 2
