"""Conformance: the test vectors, the runner and the implementations it checks.

* :mod:`.vectors`: the vector files (:mod:`.vectors.expectations`,
  :mod:`.vectors.generation`, :mod:`.vectors.validation`);
* :mod:`.runner`: checks an implementation against the vectors, one verdict per
  test, per-file summaries and the conformance table;
* :mod:`.diagnosis`: which known mistake explains a failure;
* :mod:`.campaign`: random differential campaigns (``expdecay check --random``);
* :mod:`.adapters`: the implementations (this package, Keras 3, tf.keras, optax,
  PyTorch, ``python:`` callables, ``cmd:`` programs) behind one interface
  (:mod:`.adapters.registry`), and the JSON-lines protocol of worker
  processes (:mod:`.adapters.codec`, :mod:`.adapters.worker`,
  :mod:`.adapters.client`, :mod:`.adapters.processes`, :mod:`.adapters.hub`).

The command line (``expdecay vectors``, ``expdecay check``) is
:mod:`expdecay.cli.vectors` and :mod:`expdecay.cli.check`.  Submodules are
imported on use.  The pytest helpers for other projects
(:mod:`expdecay.testing.conformance`) are a separate, public layer on top.
"""
