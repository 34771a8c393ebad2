"""Arithmetic in GF(2^m), polynomial basis, elements as Python ints (bit i = x^i).

Multiplication is carry-less with a 4-bit window table; reduction folds the high part
back with the (trinomial/pentanomial) reduction polynomial; inversion is the extended
Euclidean algorithm over GF(2)[x], which in Python is far faster than Fermat.
"""

from __future__ import annotations


class Field:
    def __init__(self, m: int, reduction_exponents: tuple[int, ...]) -> None:
        """``reduction_exponents``: the low terms of f(x) = x^m + sum x^k (k in it)."""
        self.m = m
        self.low_terms = tuple(reduction_exponents)
        self.poly = (1 << m) | sum(1 << k for k in reduction_exponents)
        self.mask = (1 << m) - 1
        self.byte_len = (m + 7) // 8

    def reduce(self, c: int) -> int:
        m, mask, terms = self.m, self.mask, self.low_terms
        while c >> m:
            hi = c >> m
            c &= mask
            for k in terms:
                c ^= hi << k
        return c

    def mul(self, a: int, b: int) -> int:
        if a == 0 or b == 0:
            return 0
        if a.bit_length() < b.bit_length():
            a, b = b, a
        # table of a * u for u in 0..15 (carry-less)
        a2 = a << 1
        a4 = a << 2
        a8 = a << 3
        table = [0, a, a2, a2 ^ a, a4, a4 ^ a, a4 ^ a2, a4 ^ a2 ^ a,
                 a8, a8 ^ a, a8 ^ a2, a8 ^ a2 ^ a, a8 ^ a4, a8 ^ a4 ^ a, a8 ^ a4 ^ a2,
                 a8 ^ a4 ^ a2 ^ a]
        r = 0
        shift = (b.bit_length() + 3) & ~3
        while shift:
            shift -= 4
            r = (r << 4) ^ table[(b >> shift) & 0xF]
        return self.reduce(r)

    def sqr(self, a: int) -> int:
        # Squaring spreads the bits: bit i goes to bit 2i.
        r = 0
        i = 0
        while a:
            byte = a & 0xFF
            r |= _SPREAD[byte] << (16 * i)
            a >>= 8
            i += 1
        return self.reduce(r)

    def inv(self, a: int) -> int:
        if a == 0:
            raise ZeroDivisionError("inverse of 0 in GF(2^m)")
        u, v = a, self.poly
        g1, g2 = 1, 0
        while u != 1:
            j = u.bit_length() - v.bit_length()
            if j < 0:
                u, v = v, u
                g1, g2 = g2, g1
                j = -j
            u ^= v << j
            g1 ^= g2 << j
        return self.reduce(g1)

    def div(self, a: int, b: int) -> int:
        return self.mul(a, self.inv(b))

    def half_trace(self, a: int) -> int:
        """H(a) = sum_{i=0}^{(m-1)/2} a^(2^(2i)); solves z^2 + z = a when Tr(a) = 0 (m odd)."""
        if self.m % 2 == 0:
            raise ValueError("half-trace needs an odd m")
        h = a
        for _ in range((self.m - 1) // 2):
            h = self.sqr(self.sqr(h)) ^ a
        return h

    def to_bytes(self, a: int) -> bytes:
        return a.to_bytes(self.byte_len, "big")

    def from_bytes(self, data: bytes) -> int:
        a = int.from_bytes(data, "big")
        if a >> self.m:
            raise ValueError("field element out of range")
        return a


def _spread(byte: int) -> int:
    r = 0
    for i in range(8):
        if byte >> i & 1:
            r |= 1 << (2 * i)
    return r


_SPREAD = [_spread(b) for b in range(256)]
