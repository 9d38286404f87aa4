"""The operators: one schema (:mod:`sdk.ops.schema`), the registry of their kernels, the
interpreter that runs a graph with them (the specification every backend is checked against),
and the cost model. Graph, frontends, quant and compile may import this package; it never
imports backends, runtime or profile."""
