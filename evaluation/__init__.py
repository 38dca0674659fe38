"""Measuring models: FVD on UCF-101 and CLIPSIM on MSR-VTT (paper section 5.4), and the metrics for any video sets."""
