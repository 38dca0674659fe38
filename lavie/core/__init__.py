"""The core every layer builds on: errors and one-line messages (``errors``), strict config loading
with dotted overrides (``config``), storage with one storage-option rule (``storage``), the
manifest contract (``manifest``) and video files (``video``: the one reader, which curation, the
training stream and ``lavie check`` share, and the one writer). It imports no other layer.
"""
