"""The LaVie platform's own package: the shared core below every layer (``lavie.core``), and the
``lavie`` command and the demo above them all (``lavie.cli``, ``lavie.demo``), with the synthetic
inputs the demo, the tests and the benchmarks use (``lavie.synthetic``).

Nothing is imported here, so that importing the core stays light.
"""
