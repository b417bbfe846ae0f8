"""Internal: what the drop-ins :mod:`expdecay.keras`, :mod:`expdecay.optax` and
:mod:`expdecay.torch` share. Not public API: names here may change at any time.

* :mod:`~expdecay.frameworks.tables`: the host-side tables of a schedule's values,
  computed ahead of time with expdecay's own evaluator (no framework needed);
* :mod:`~expdecay.frameworks.graph`: the in-graph lookup of a table under jax,
  TensorFlow and torch (integer work and gathers only), and the one torch custom
  op that takes a value from the host;
* :mod:`~expdecay.frameworks.realsteps`: float (real-valued) steps for the Keras
  drop-in, on top of :mod:`~expdecay.frameworks.graph`.

Each function imports its framework lazily: importing this package needs none.
"""
