"""Conformance vectors: deterministic generation and validation.

A vector file holds the tests of one theme (documented examples, step
boundaries, large steps, ...), in the layout of ``spec/vectors.schema.json``
and ``spec/conformance.md``: shared parameters in ``testGroups``, one entry
per step in ``tests``, every number written exactly (integers as decimal
strings, floats as a float64 bit pattern plus its hex float), the expected
bits of both orders, the exact value to 40 digits, flags explained in
``notes`` and a tolerance in ulps per profile.

* :mod:`.expectations`: the flags and notes, the number encoding, and
  :func:`make_tests`, the one definition of a test's record;
* :mod:`.generation`: the themes and the writer (the same version of the
  package rewrites byte-identical files);
* :mod:`.validation`: loading (bounded, strict JSON, schema) and validation,
  which regenerates every test with :func:`make_tests` and compares it
  field by field.
"""

from __future__ import annotations

from .expectations import (
    ANALYSIS_NOTES,
    CAMPAIGN_THEME,
    DERIVED_FLAGS,
    KERAS_POW_TOLERANCE,
    NOTES,
    SEARCH_THEME,
    Case,
    Group,
    decode_number,
    decode_result,
    encode_number,
    encode_result,
    keras_tolerance,
    make_tests,
)
from .generation import ALGORITHM, SCHEMA_NAME, THEMES, dumps, generate, write_vectors
from .validation import (
    VectorFileError,
    default_vectors_dir,
    iter_tests,
    load_vector_file,
    schema,
    validate_file,
)

__all__ = [
    "THEMES",
    "NOTES",
    "DERIVED_FLAGS",
    "ANALYSIS_NOTES",
    "SEARCH_THEME",
    "CAMPAIGN_THEME",
    "ALGORITHM",
    "SCHEMA_NAME",
    "KERAS_POW_TOLERANCE",
    "Case",
    "Group",
    "keras_tolerance",
    "generate",
    "dumps",
    "make_tests",
    "write_vectors",
    "load_vector_file",
    "iter_tests",
    "validate_file",
    "VectorFileError",
    "decode_number",
    "encode_number",
    "decode_result",
    "encode_result",
    "default_vectors_dir",
    "schema",
]
