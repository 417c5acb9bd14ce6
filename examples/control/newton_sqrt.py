"""sqrt(1 + a**2) by Newton's method: g <- (g + s / g) / 2 until g * g is within a relative
1e-12 of s (at most 50 steps). The backward runs the steps taken back, last first; its
gradient is that of those steps, which approaches a / sqrt(1 + a**2)."""


def newton_sqrt(a):
    s = 1.0 + a * a
    g = s
    k = 0
    while abs(g * g - s) > 1e-12 * s and k < 50:
        g = 0.5 * (g + s / g)
        k = k + 1
    return g
