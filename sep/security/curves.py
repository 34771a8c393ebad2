"""Koblitz curves over GF(2^m): sect163k1 (Zigbee crypto suite 1) and sect283k1 (suite 2).

E: y^2 + xy = x^3 + a x^2 + b, parameters from SEC 2 v2 (sections 3.2.1 and 3.4.1).
Points are affine :class:`Point` values (``INFINITY`` for the point at infinity) at the
API; scalar multiplication runs in López–Dahab projective coordinates (no inversions)
with a width-4 NAF over precomputed affine odd multiples.
"""

from __future__ import annotations

import dataclasses

from sep.security.gf2m import Field


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int
    infinity: bool = False


INFINITY = Point(0, 0, True)


@dataclasses.dataclass(frozen=True, eq=False)
class Curve:
    name: str
    field: Field
    a: int
    b: int
    G: Point
    n: int
    h: int

    @property
    def m(self) -> int:
        return self.field.m

    @property
    def coord_len(self) -> int:
        return self.field.byte_len

    @property
    def scalar_len(self) -> int:
        return (self.n.bit_length() + 7) // 8

    def __repr__(self) -> str:
        return f"Curve({self.name})"

    # -- affine group law ------------------------------------------------------------------
    def on_curve(self, P: Point) -> bool:
        if P.infinity:
            return True
        f = self.field
        x, y = P.x, P.y
        if x >> f.m or y >> f.m:
            return False
        lhs = f.sqr(y) ^ f.mul(x, y)
        x2 = f.sqr(x)
        rhs = f.mul(x2, x) ^ (x2 if self.a else 0) ^ self.b
        return lhs == rhs

    def neg(self, P: Point) -> Point:
        return P if P.infinity else Point(P.x, P.x ^ P.y)

    def add(self, P: Point, Q: Point) -> Point:
        if P.infinity:
            return Q
        if Q.infinity:
            return P
        f = self.field
        if P.x == Q.x:
            if P.y == Q.y:
                return self.double(P)
            return INFINITY
        lam = f.div(P.y ^ Q.y, P.x ^ Q.x)
        x3 = f.sqr(lam) ^ lam ^ P.x ^ Q.x ^ self.a
        y3 = f.mul(lam, P.x ^ x3) ^ x3 ^ P.y
        return Point(x3, y3)

    def double(self, P: Point) -> Point:
        if P.infinity or P.x == 0:
            return INFINITY
        f = self.field
        lam = P.x ^ f.div(P.y, P.x)
        x3 = f.sqr(lam) ^ lam ^ self.a
        y3 = f.sqr(P.x) ^ f.mul(lam ^ 1, x3)
        return Point(x3, y3)

    # -- López–Dahab projective (X, Y, Z) ~ (X/Z, Y/Z^2) ------------------------------------
    def _ld_double(self, X: int, Y: int, Z: int) -> tuple[int, int, int]:
        f = self.field
        if Z == 0 or X == 0:
            return 1, 0, 0
        X2, Z2 = f.sqr(X), f.sqr(Z)
        Z4 = f.sqr(Z2)
        Z3 = f.mul(X2, Z2)
        bZ4 = Z4 if self.b == 1 else f.mul(self.b, Z4)
        X3 = f.sqr(X2) ^ bZ4
        t = f.sqr(Y) ^ bZ4
        if self.a:
            t ^= Z3 if self.a == 1 else f.mul(self.a, Z3)
        Y3 = f.mul(bZ4, Z3) ^ f.mul(X3, t)
        return X3, Y3, Z3

    def _ld_add_affine(self, X1: int, Y1: int, Z1: int, P: Point) -> tuple[int, int, int]:
        """(X1, Y1, Z1) + P with P affine (mixed addition)."""
        if P.infinity:
            return X1, Y1, Z1
        if Z1 == 0:
            return P.x, P.y, 1
        f = self.field
        x2, y2 = P.x, P.y
        Z1s = f.sqr(Z1)
        A = f.mul(y2, Z1s) ^ Y1
        B = f.mul(x2, Z1) ^ X1
        if B == 0:
            if A == 0:
                return self._ld_double(x2, y2, 1)
            return 1, 0, 0
        C = f.mul(Z1, B)
        t = C ^ (Z1s if self.a == 1 else (f.mul(self.a, Z1s) if self.a else 0))
        D = f.mul(f.sqr(B), t)
        Z3 = f.sqr(C)
        E = f.mul(A, C)
        X3 = f.sqr(A) ^ D ^ E
        F = X3 ^ f.mul(x2, Z3)
        G = f.mul(x2 ^ y2, f.sqr(Z3))
        Y3 = f.mul(E ^ Z3, F) ^ G
        return X3, Y3, Z3

    def _ld_to_affine(self, X: int, Y: int, Z: int) -> Point:
        if Z == 0:
            return INFINITY
        f = self.field
        zi = f.inv(Z)
        return Point(f.mul(X, zi), f.mul(Y, f.sqr(zi)))

    def mul(self, k: int, P: Point, *, reduce: bool = True) -> Point:
        """k * P (``reduce=False`` keeps k as given: for order checks of untrusted points)."""
        if reduce:
            k %= self.n
        if P.infinity or k == 0:
            return INFINITY
        # odd multiples P, 3P, 5P, 7P (affine)
        P2 = self.double(P)
        odd = [P]
        for _ in range(3):
            odd.append(self.add(odd[-1], P2))
        neg = [self.neg(Q) for Q in odd]
        digits = _wnaf(k, 4)
        X, Y, Z = 1, 0, 0
        for d in reversed(digits):
            X, Y, Z = self._ld_double(X, Y, Z)
            if d > 0:
                X, Y, Z = self._ld_add_affine(X, Y, Z, odd[d >> 1])
            elif d < 0:
                X, Y, Z = self._ld_add_affine(X, Y, Z, neg[(-d) >> 1])
        return self._ld_to_affine(X, Y, Z)

    def mul_add(self, k1: int, P1: Point, k2: int, P2: Point) -> Point:
        """k1 * P1 + k2 * P2 (signature verification)."""
        return self.add(self.mul(k1, P1), self.mul(k2, P2))


def _wnaf(k: int, w: int) -> list[int]:
    digits = []
    width = 1 << w
    while k:
        if k & 1:
            d = k % width
            if d >= width // 2:
                d -= width
            k -= d
        else:
            d = 0
        digits.append(d)
        k >>= 1
    return digits


SECT163K1 = Curve(
    name="sect163k1",
    field=Field(163, (7, 6, 3, 0)),
    a=1, b=1,
    G=Point(0x02FE13C0537BBC11ACAA07D793DE4E6D5E5C94EEE8,
            0x0289070FB05D38FF58321F2E800536D538CCDAA3D9),
    n=0x04000000000000000000020108A2E0CC0D99F8A5EF,
    h=2,
)

SECT283K1 = Curve(
    name="sect283k1",
    field=Field(283, (12, 7, 5, 0)),
    a=0, b=1,
    G=Point(0x0503213F78CA44883F1A3B8162F188E553CD265F23C1567A16876913B0C2AC2458492836,
            0x01CCDA380F1C9E318D90F95D07E5426FE87E45C0E8184698E45962364E34116177DD2259),
    n=0x01FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFE9AE2ED07577265DFF7F94451E061E163C61,
    h=4,
)

CURVES = {c.name: c for c in (SECT163K1, SECT283K1)}


def scalar_mult(curve: Curve, k: int, P: Point) -> Point:
    return curve.mul(k, P)


def point_to_bytes(curve: Curve, P: Point, compressed: bool = True) -> bytes:
    """SEC 1 2.3.3 for binary curves."""
    if P.infinity:
        return b"\x00"
    f = curve.field
    if not compressed:
        return b"\x04" + f.to_bytes(P.x) + f.to_bytes(P.y)
    ybit = 0 if P.x == 0 else f.mul(P.y, f.inv(P.x)) & 1
    return bytes([2 | ybit]) + f.to_bytes(P.x)


def point_from_bytes(curve: Curve, data: bytes) -> Point:
    """SEC 1 2.3.4 for binary curves; ValueError for anything that is not a curve point."""
    f = curve.field
    data = bytes(data)
    n = f.byte_len
    if len(data) == 1 + n and data[0] in (2, 3):
        x = f.from_bytes(data[1:])
        if x == 0:
            y = _sqrt(f, curve.b)  # x = 0: y^2 = b
        else:
            beta = x ^ curve.a ^ f.mul(curve.b, f.inv(f.sqr(x)))
            z = f.half_trace(beta)
            if f.sqr(z) ^ z != beta:
                raise ValueError("not a point on the curve (no solution for y)")
            if (z & 1) != (data[0] & 1):
                z ^= 1
            y = f.mul(x, z)
        P = Point(x, y)
    elif len(data) == 1 + 2 * n and data[0] == 4:
        P = Point(f.from_bytes(data[1:1 + n]), f.from_bytes(data[1 + n:]))
    else:
        raise ValueError(f"bad point encoding ({len(data)} bytes, prefix {data[:1].hex()})")
    if not curve.on_curve(P):
        raise ValueError("point is not on the curve")
    return P


def _sqrt(f: Field, a: int) -> int:
    r = a
    for _ in range(f.m - 1):
        r = f.sqr(r)
    return r
