"""The cluster layer: joining a Ray cluster or starting the embedded one (``cluster``), and running
`lavie` commands on a cluster as Ray Jobs (``submission``, described by job ``spec`` files)."""
