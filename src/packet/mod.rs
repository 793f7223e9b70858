//! Zero-copy views and builders for the packets a controller sees in a Packet-In.
