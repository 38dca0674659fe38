"""The core every layer builds on: errors and one-line messages (``errors``), strict config loading
with dotted overrides (``config``), storage with one storage-option rule (``storage``), the
manifest contract (``manifest``) and the video writer (``video``). It imports no other layer.
"""
