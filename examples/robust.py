"""A robust regression loss built from abs and min (no branches needed):
quadratic near zero, linear in the tails, like the Huber loss."""


def robust(pred, target, delta=1.0):
    r = abs(pred - target)
    small = min(r, delta)  # the part of the residual inside the quadratic zone
    loss = 0.5 * small**2 + delta * (r - small)
    return loss
