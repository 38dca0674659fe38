"""Dataset statistics reports (``lavie stats``): the figures of the paper's section 5.1.

``manifest`` opens what the user named, ``accumulate`` and ``funnel`` stream over its Parquet
files, ``compute`` assembles stats.json, ``html_report`` and ``charts`` draw the page, ``cli``
wires the sub-command.
"""
