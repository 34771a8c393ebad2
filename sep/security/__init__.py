"""Zigbee / Smart Energy cryptography: AES-MMO, install codes, GF(2^m) Koblitz curves,
ECDSA, ECQV implicit certificates, ECMQV/CBKE and CCM*. Imports nothing else of ours."""
