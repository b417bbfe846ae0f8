"""Conformance: the test vectors, the runner and the implementations it checks.

* :mod:`.vectors`: the vector files (themes, generation, loading, validation);
* :mod:`.runner`: checks an implementation against the vectors, one verdict per
  test, per-file summaries and the conformance table;
* :mod:`.diagnosis`: which known mistake explains a failure;
* :mod:`.adapters`: the implementations (this package, Keras 3, tf.keras, optax,
  PyTorch, ``python:`` callables, ``cmd:`` programs) behind one interface, and
  :mod:`.adapters.protocol`, the JSON-lines protocol of worker processes.

The command line (``expdecay vectors``, ``expdecay check``) is
:mod:`expdecay.cli.vectors` and :mod:`expdecay.cli.check`.  Submodules are
imported on use, so that ``import expdecay.conformance.adapters.worker`` stays light.
"""
