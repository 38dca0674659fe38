"""Dataset statistics reports (``lavie stats``): the figures of the paper's section 5.1, and the
clips behind them.

``inputs`` opens what the user named, ``accumulate`` and ``funnel`` stream over its Parquet
files, ``samples`` draws example clips in the same pass, ``compute`` assembles stats.json,
``previews`` decodes the drawn clips on Ray into small animations, ``html_report``, ``charts`` and
``cards`` draw the page, ``clip_index`` the sortable clips.html, ``report`` writes it all; the
``lavie stats`` command (lavie/cli/stats.py) wires the sub-command.
"""
