"""AES-MMO and HMAC-AES-MMO for the Smart Energy maths (ECQV, ECMQV, image digests).

The primitives live in the radio layer (:mod:`radios.crypto`, the Zigbee PRO lower
layer); this module is the SE side's name for them."""

from radios.crypto import BLOCK, AesMmo, aes_mmo, hmac_aes_mmo, padding

__all__ = ["BLOCK", "AesMmo", "aes_mmo", "hmac_aes_mmo", "padding"]
