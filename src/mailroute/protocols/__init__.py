"""Sans-I/O protocol codecs: bytes in, events out; actions in, bytes out. No sockets here."""
